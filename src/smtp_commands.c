/* smtp_commands.c - one handler per SMTP verb (RFC 5321 4.1.1 and the extensions backstop
 * advertises). Each handler checks the session state, parses its argument with the pure parsers
 * of smtp_parse.c, asks the decision engine where a stage has checks (HELO/EHLO, MAIL, DATA:
 * smtp_decide.c; RCPT: smtp_rcpt.c), and answers through session_reply(). */
#include "smtp_session_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "log.h"
#include "util.h"

typedef void (*command_handler)(struct smtp_session *s, const struct smtp_command *cmd);

/* What HELO/EHLO goes on with once decided. */
struct helo_ctx {
	bool esmtp;
	char name[SMTP_DOMAIN_MAX + 1];
};

/* The HELO/EHLO argument: a domain or an address literal (helo_syntax). Refused with 501, or
 * turned into the safe name that headers and logs show. */
static bool helo_parse(struct smtp_session *s, const struct smtp_command *cmd, char *name, size_t namesz)
{
	char shown[SMTP_DOMAIN_MAX * 4 + 1];
	const char *verb = smtp_verb_name(cmd->verb);

	log_sanitize(shown, sizeof shown, cmd->arg, cmd->arg_len);
	if (smtp_helo_parse(cmd->arg, cmd->arg_len, !s->cfg->helo_lenient, name, namesz) != 0) {
		log_notice("session=%s client=%s %s refused: \"%s\" is not a domain or an address literal",
			   s->id, s->client_ip, verb, shown);
		session_reply(s, 501, "5.5.4", "Syntax: %s hostname", verb);
		return false;
	}
	if (strlen(name) != cmd->arg_len || memcmp(name, cmd->arg, cmd->arg_len) != 0)
		log_info("session=%s client=%s %s \"%s\" is not a domain or an address literal; shown as %s",
			 s->id, s->client_ip, verb, shown, name);
	return true;
}

/* The greeting is accepted: a new start (RFC 5321 4.1.4), and the reply. */
static void helo_accept(struct smtp_session *s, const struct helo_ctx *h)
{
	const struct bs_config *cfg = s->cfg;
	char buf[1024];

	session_tx_reset(s);
	memcpy(s->helo, h->name, sizeof s->helo);
	s->state = SMTP_STATE_READY;
	s->esmtp = h->esmtp;
	if (!h->esmtp) {
		session_reply(s, 250, NULL, "%s", cfg->hostname);
		return;
	}
	int n = snprintf(buf, sizeof buf,
			 "250-%s Hello %s [%s]\r\n"
			 "250-PIPELINING\r\n"
			 "250-SIZE %llu\r\n"
			 "%s"
			 "250-ENHANCEDSTATUSCODES\r\n"
			 "250-8BITMIME\r\n"
			 "250-DSN\r\n"
			 "250 SMTPUTF8\r\n",
			 cfg->hostname, s->helo, s->client_ip, (unsigned long long)cfg->max_message_size,
			 s->rt->tls_server != NULL && !s->tls ? "250-STARTTLS\r\n" : "");
	session_write(s, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
	stats_reply(s->env->stats, STATS_STAGE_HELO, 250);
}

/* A refused greeting changes nothing: the session keeps its earlier name and transaction. */
static void helo_decided(struct smtp_session *s, const struct engine_decision *d, const void *ctx)
{
	const struct helo_ctx *h = ctx;
	char extra[ENGINE_LOG_MAX + sizeof h->name + 160];
	bool refused = session_decision_refuses(d);

	int n = snprintf(extra, sizeof extra, "verb=%s name=%s ", h->esmtp ? "EHLO" : "HELO", h->name);
	session_decision_extra(d, extra + n, sizeof extra - (size_t)n);
	if (refused) {
		session_decision_refuse(s, "helo", NULL, d, extra);
		return;
	}
	helo_accept(s, h);
	free(s->helo_headers);
	s->helo_headers = d->headers[0] ? xstrdup(d->headers) : NULL;
	session_log_decision(s, "helo", NULL, 250, NULL, "greeting accepted", extra);
}

static void cmd_helo_ehlo(struct smtp_session *s, const struct smtp_command *cmd)
{
	struct helo_ctx h = { .esmtp = cmd->verb == SMTP_VERB_EHLO };
	struct engine_request req;

	if (!helo_parse(s, cmd, h.name, sizeof h.name))
		return;
	if (!session_asks(s, ENGINE_STAGE_HELO)) {
		helo_accept(s, &h);
		return;
	}
	const struct helo_ctx *hc = session_decide_begin(s, helo_decided, &h, sizeof h);
	session_request(s, ENGINE_STAGE_HELO, &req);
	req.helo = hc->name;
	engine_request_set_sender(&req, NULL); /* a greeting ends any transaction */
	req.size_known = false;
	req.nrcpts = 0;
	session_decide_ask(s, &req);
}

static bool session_need_greeting(struct smtp_session *s)
{
	if (s->state == SMTP_STATE_INIT) {
		session_reply(s, 503, "5.5.1", "Error: send HELO/EHLO first");
		return true;
	}
	return false;
}

static bool mail_params_given(const struct smtp_mail_params *p)
{
	return p->has_size || p->body != SMTP_BODY_UNSPEC || p->smtputf8 || p->ret != SMTP_RET_UNSPEC ||
	       p->envid[0] != '\0';
}

/* The transaction starts: 250 only now, after every check said yes. */
static void mail_accept(struct smtp_session *s, const struct smtp_mail_cmd *mail, const char *headers,
			const char *facts, const char *extra)
{
	s->tx = xcalloc(1, sizeof *s->tx);
	s->tx->facts = facts && facts[0] ? xstrdup(facts) : NULL;
	s->tx->from = mail->from;
	s->tx->params = mail->params;
	s->tx->started_ms = now_ms();
	s->state = SMTP_STATE_MAIL;
	session_tx_add_headers(s, s->connect_headers);
	session_tx_add_headers(s, s->helo_headers);
	session_tx_add_headers(s, headers);
	session_reply(s, 250, "2.1.0", "Sender OK");
	session_log_decision(s, "mail", &s->tx->from, 250, "2.1.0", "sender accepted", extra);
}

/* A refused MAIL starts no transaction. */
static void mail_decided(struct smtp_session *s, const struct engine_decision *d, const void *ctx)
{
	const struct smtp_mail_cmd *mail = ctx;
	char extra[ENGINE_LOG_MAX + 128];

	session_decision_extra(d, extra, sizeof extra);
	if (!session_decision_refuses(d)) {
		mail_accept(s, mail, d->headers, d->facts, extra);
		return;
	}
	session_decision_refuse(s, "mail", &mail->from, d, extra);
}

static void cmd_mail(struct smtp_session *s, const struct smtp_command *cmd)
{
	struct smtp_mail_cmd mail;
	struct smtp_parse_error err;

	if (session_need_greeting(s))
		return;
	if (s->tx != NULL) {
		session_reply(s, 503, "5.5.1", "Error: nested MAIL command");
		return;
	}
	s->n_mail++;
	if (smtp_mail_parse(cmd->arg, cmd->arg_len, &mail, &err) != 0) {
		session_reply(s, err.code, err.enhanced, "%s", err.text);
		session_log_decision(s, "mail", NULL, err.code, err.enhanced, err.text, NULL);
		return;
	}
	if (!s->esmtp && mail_params_given(&mail.params)) {
		session_reply(s, 555, "5.5.4", "ESMTP parameters need EHLO");
		return;
	}
	if (mail.params.has_size && mail.params.size > s->cfg->max_message_size) {
		session_reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
		session_log_decision(s, "mail", &mail.from, 552, "5.3.4", "declared SIZE over the limit", NULL);
		return;
	}
	if (!session_asks(s, ENGINE_STAGE_MAIL)) {
		mail_accept(s, &mail, NULL, NULL, NULL);
		return;
	}
	struct engine_request req;
	const struct smtp_mail_cmd *mc = session_decide_begin(s, mail_decided, &mail, sizeof mail);
	session_request(s, ENGINE_STAGE_MAIL, &req);
	engine_request_set_sender(&req, &mc->from);
	req.size_known = mail.params.has_size;
	req.size = mail.params.size;
	session_decide_ask(s, &req);
}

static void cmd_rcpt(struct smtp_session *s, const struct smtp_command *cmd)
{
	struct smtp_rcpt_cmd rc;
	struct smtp_parse_error err;

	if (session_need_greeting(s))
		return;
	if (s->tx == NULL) {
		session_reply(s, 503, "5.5.1", "Error: need MAIL command");
		return;
	}
	s->n_rcpt++;
	if (smtp_rcpt_parse(cmd->arg, cmd->arg_len, s->tx->params.smtputf8, &rc, &err) != 0) {
		session_rcpt_refuse(s, NULL, err.code, err.enhanced, err.text, "source=syntax");
		return;
	}
	if (!s->esmtp && (rc.params.notify || rc.params.orcpt[0])) {
		session_rcpt_refuse(s, &rc.to, 555, "5.5.4", "ESMTP parameters need EHLO", "source=syntax");
		return;
	}
	if (session_decide_connect_refuses(s, &rc.to))
		return;
	if (s->tx->nrcpts + session_rcpt_live(s) >= s->cfg->max_recipients) {
		session_rcpt_refuse(s, &rc.to, 452, "4.5.3", "Error: too many recipients", "source=limit");
		return;
	}
	session_rcpt_decide(s, &rc);
}

/* DATA that backstop itself refuses: answered here (true). */
static bool data_refuse(struct smtp_session *s, const struct smtp_command *cmd)
{
	if (session_need_greeting(s))
		return true;
	if (s->tx == NULL) {
		session_reply(s, 503, "5.5.1", "Error: need MAIL command");
		return true;
	}
	if (s->tx->nrcpts == 0) {
		session_reply(s, 503, "5.5.1", "Error: no valid recipients");
		return true;
	}
	if (cmd->arg_len > 0) {
		session_reply(s, 501, "5.5.4", "Syntax: DATA");
		return true;
	}
	return false;
}

void session_data_pipelined(struct smtp_session *s, size_t n)
{
	log_notice("session=%s client=%s improper command pipelining after DATA: %zu octets sent "
		   "before the reply to DATA discarded, disconnecting", s->id, s->client_ip, n);
	session_end_reason(s, STATS_END_PROTOCOL);
	session_reply(s, 554, "5.5.0", "Error: improper command pipelining after DATA");
	session_close(s);
}

/* DATA decided before the backend is asked. Text that came behind DATA meanwhile is never
 * content nor commands: after a refusal the session ends (as after the backend's refusal). */
static void data_decided(struct smtp_session *s, const struct engine_decision *d, const void *ctx)
{
	char extra[ENGINE_LOG_MAX + 128];

	(void)ctx;
	session_decision_extra(d, extra, sizeof extra);
	if (!session_decision_refuses(d)) {
		session_log_decision(s, "data-command", NULL, 0, NULL, "passed to the backend", extra);
		session_tx_add_headers(s, d->headers);
		session_data_command(s);
		return;
	}
	session_decision_refuse(s, "data-command", NULL, d, extra);
	size_t early = session_input_pending(s);
	if (early > 0)
		session_data_pipelined(s, early);
}

/* Text behind DATA before our 354 is never content nor commands: if DATA was refused, its reply
 * comes first; otherwise the 554 is DATA's reply and the backend is not asked. */
static void cmd_data(struct smtp_session *s, const struct smtp_command *cmd)
{
	bool refused = data_refuse(s, cmd);
	if (s->input_behind > 0) {
		session_data_pipelined(s, s->input_behind);
	} else if (!refused && session_asks(s, ENGINE_STAGE_DATA)) {
		struct engine_request req;
		session_request(s, ENGINE_STAGE_DATA, &req);
		session_decide(s, &req, data_decided, NULL, 0);
	} else if (!refused) {
		session_data_command(s);
	}
}

static void cmd_rset(struct smtp_session *s, const struct smtp_command *cmd)
{
	if (cmd->arg_len > 0) {
		session_reply(s, 501, "5.5.4", "Syntax: RSET");
		return;
	}
	session_tx_reset(s);
	if (s->state == SMTP_STATE_MAIL)
		s->state = SMTP_STATE_READY;
	s->junk++;
	session_reply(s, 250, "2.0.0", "OK");
}

static void cmd_noop(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	s->junk++;
	session_reply(s, 250, "2.0.0", "OK");
}

static void cmd_quit(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	session_end_reason(s, STATS_END_QUIT);
	session_reply(s, 221, "2.0.0", "Bye");
	session_close(s);
}

static void cmd_help(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	s->junk++;
	session_reply(s, 214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP%s",
		      s->rt->tls_server ? " STARTTLS" : "");
}

static void cmd_vrfy(struct smtp_session *s, const struct smtp_command *cmd)
{
	s->junk++;
	if (cmd->arg_len == 0) {
		session_reply(s, 501, "5.5.4", "Syntax: VRFY address");
		return;
	}
	/* RFC 5321 3.5.3: 252 without saying whether the user exists */
	session_reply(s, 252, "2.5.0", "Cannot VRFY user; send mail and RCPT will tell");
}

static void cmd_expn(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	s->junk++;
	session_reply(s, 502, "5.5.1", "Error: EXPN not available");
}

static void cmd_starttls(struct smtp_session *s, const struct smtp_command *cmd)
{
	if (s->tls) {
		session_reply(s, 503, "5.5.1", "Error: TLS already active");
		return;
	}
	if (s->rt->tls_server == NULL) {
		session_reply(s, 502, "5.5.1", "Error: STARTTLS not available");
		return;
	}
	if (cmd->arg_len > 0) {
		session_reply(s, 501, "5.5.4", "Syntax: STARTTLS");
		return;
	}
	if (session_need_greeting(s))
		return;
	session_start_tls(s);
}

static void cmd_bdat(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	session_reply(s, 502, "5.5.1", "Error: BDAT not available (no CHUNKING)");
}

static void cmd_auth(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	session_reply(s, 502, "5.5.1", "Error: AUTH not available on this gateway");
}

static const command_handler handlers[] = {
	[SMTP_VERB_HELO] = cmd_helo_ehlo, [SMTP_VERB_EHLO] = cmd_helo_ehlo, [SMTP_VERB_MAIL] = cmd_mail,
	[SMTP_VERB_RCPT] = cmd_rcpt, [SMTP_VERB_DATA] = cmd_data, [SMTP_VERB_RSET] = cmd_rset,
	[SMTP_VERB_NOOP] = cmd_noop, [SMTP_VERB_QUIT] = cmd_quit, [SMTP_VERB_HELP] = cmd_help,
	[SMTP_VERB_VRFY] = cmd_vrfy, [SMTP_VERB_EXPN] = cmd_expn, [SMTP_VERB_STARTTLS] = cmd_starttls,
	[SMTP_VERB_BDAT] = cmd_bdat, [SMTP_VERB_AUTH] = cmd_auth,
};

/* Another protocol talking to port 25 (HTTP through a proxy, a browser form): end at once. */
static bool command_is_foreign_protocol(const char *line, size_t len)
{
	static const char *const foreign[] = { "GET ", "POST ", "CONNECT ", "HEAD ", "PUT ", "USER " };
	for (size_t i = 0; i < ARRAY_SIZE(foreign); i++) {
		size_t n = strlen(foreign[i]);
		if (len >= n && memcmp(line, foreign[i], n) == 0)
			return true;
	}
	return false;
}

void session_command(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_command cmd;

	s->reply_stage = STATS_STAGE_OTHER;
	if (command_is_foreign_protocol(line, len)) {
		stats_command(s->env->stats, STATS_VERB_INVALID);
		session_end_reason(s, STATS_END_PROTOCOL);
		session_reply(s, 521, "5.5.1", "%s Protocol error", s->cfg->hostname);
		log_notice("session=%s client=%s non-SMTP command, disconnecting", s->id, s->client_ip);
		session_close(s);
		return;
	}
	if (smtp_command_parse(line, len, &cmd) != 0) {
		s->last_verb = "invalid command";
		stats_command(s->env->stats, STATS_VERB_INVALID);
		session_reply(s, 500, "5.5.2", "Error: invalid characters in command");
		return;
	}
	if (cmd.verb == SMTP_VERB_UNKNOWN || cmd.verb >= ARRAY_SIZE(handlers) || handlers[cmd.verb] == NULL) {
		s->last_verb = "unknown command";
		stats_command(s->env->stats, SMTP_VERB_UNKNOWN);
		s->junk++;
		session_reply(s, 500, "5.5.1", "Error: command not recognized");
		return;
	}
	s->last_verb = smtp_verb_name(cmd.verb);
	s->reply_stage = stats_stage_of_verb(cmd.verb);
	stats_command(s->env->stats, cmd.verb);
	size_t max = s->cfg->max_command_line - 2;
	if (len > max && cmd.verb != SMTP_VERB_MAIL && cmd.verb != SMTP_VERB_RCPT) {
		session_reply(s, 500, "5.5.2", "Line too long");
		return;
	}
	handlers[cmd.verb](s, &cmd);
}
