/* test_ldap_filter.c - search filters: RFC 4515 escaping of the address, presets, templates,
 * the addresses that are refused, userAccountControl and proxyAddresses helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ldap_filter.h"

static char out[LDAP_FILTER_LEN_MAX];

static void test_escape_specials(void **state)
{
	(void)state;
	assert_int_equal(ldap_filter_escape("a*b(c)d\\e", 9, out, sizeof(out)), LFILTER_OK);
	assert_string_equal(out, "a\\2Ab\\28c\\29d\\5Ce");
	assert_int_equal(ldap_filter_escape("a\0b", 3, out, sizeof(out)), LFILTER_OK);
	assert_string_equal(out, "a\\00b");
	/* non-ASCII octets (UTF-8 "é") are escaped too */
	assert_int_equal(ldap_filter_escape("\xc3\xa9", 2, out, sizeof(out)), LFILTER_OK);
	assert_string_equal(out, "\\C3\\A9");
	assert_int_equal(ldap_filter_escape("plain.user+tag@example.test", 27, out, sizeof(out)),
			 LFILTER_OK);
	assert_string_equal(out, "plain.user+tag@example.test");
	assert_int_equal(ldap_filter_escape("", 0, out, sizeof(out)), LFILTER_OK);
	assert_string_equal(out, "");
	assert_int_equal(ldap_filter_escape("(((", 3, out, 5), LFILTER_TOO_LONG);
	assert_string_equal(out, "");
}

static void test_build_openldap(void **state)
{
	const char *t = ldap_filter_preset(LDAP_PRESET_OPENLDAP);
	(void)state;
	assert_int_equal(ldap_filter_build(t, "john@example.test", 17, out, sizeof(out)), LFILTER_OK);
	assert_string_equal(out, "(|(mail=john@example.test)(mailAlternateAddress=john@example.test))");
}

static void test_build_ad(void **state)
{
	const char *t = ldap_filter_preset(LDAP_PRESET_ACTIVE_DIRECTORY);
	(void)state;
	assert_int_equal(ldap_filter_build(t, "J@example.test", 14, out, sizeof(out)), LFILTER_OK);
	assert_non_null(strstr(out, "(proxyAddresses=smtp:J@example.test)"));
	assert_non_null(strstr(out, "(mail=J@example.test)"));
	assert_non_null(strstr(out, "(objectClass=contact)"));
	assert_non_null(strstr(out, "(objectClass=publicFolder)"));
	assert_null(ldap_filter_preset(LDAP_PRESET_NONE));
}

/* Injection attempts come out as plain assertion values: no new filter items, no wildcards. */
static void test_injection(void **state)
{
	static const char *const evil[] = {
		"*@example.test",
		"a)(mail=*@example.test",
		"a)(|(objectClass=*)@example.test",
		"a\\2a@example.test",
		"x*)(uid=*))(|(uid=*@example.test",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); i++) {
		assert_int_equal(ldap_filter_build("(mail=%s)", evil[i], strlen(evil[i]), out, sizeof(out)),
				 LFILTER_OK);
		assert_int_equal(strncmp(out, "(mail=", 6), 0);
		assert_null(strchr(out + 6, '('));
		assert_null(strchr(out, '*'));
		assert_ptr_equal(strchr(out + 6, ')'), out + strlen(out) - 1);
	}
	assert_int_equal(ldap_filter_build("(mail=%s)", "a)(mail=*@example.test", 22, out, sizeof(out)),
			 LFILTER_OK);
	assert_string_equal(out, "(mail=a\\29\\28mail=\\2A@example.test)");
	assert_int_equal(ldap_filter_build("(mail=%s)", "a\\2a@example.test", 17, out, sizeof(out)),
			 LFILTER_OK);
	assert_string_equal(out, "(mail=a\\5C2a@example.test)");
}

static void test_impossible(void **state)
{
	(void)state;
	assert_int_equal(ldap_filter_build("(mail=%s)", "a\0*@example.test", 16, out, sizeof(out)),
			 LFILTER_IMPOSSIBLE);
	assert_string_equal(out, "");
	assert_int_equal(ldap_filter_build("(mail=%s)", "a\r\n@example.test", 16, out, sizeof(out)),
			 LFILTER_IMPOSSIBLE);
	assert_int_equal(ldap_filter_build("(mail=%s)", "a\x7f@example.test", 15, out, sizeof(out)),
			 LFILTER_IMPOSSIBLE);
	assert_int_equal(ldap_filter_build("(mail=%s)", "noat", 4, out, sizeof(out)), LFILTER_IMPOSSIBLE);
	assert_int_equal(ldap_filter_build("(mail=%s)", "@example.test", 13, out, sizeof(out)),
			 LFILTER_IMPOSSIBLE);
	assert_int_equal(ldap_filter_build("(mail=%s)", "a@", 2, out, sizeof(out)), LFILTER_IMPOSSIBLE);
	assert_int_equal(ldap_filter_build("(mail=%s)", "", 0, out, sizeof(out)), LFILTER_IMPOSSIBLE);
	char longaddr[400];
	memset(longaddr, 'a', sizeof(longaddr));
	memcpy(longaddr + 380, "@example.test", 13);
	assert_int_equal(ldap_filter_build("(mail=%s)", longaddr, 393, out, sizeof(out)), LFILTER_IMPOSSIBLE);
	assert_true(ldap_filter_addr_possible("\xc3\xa9t\xc3\xa9@example.test", 18));
	assert_true(ldap_filter_addr_possible("\"a@b\"@example.test", 18));
}

static void test_too_long(void **state)
{
	char small[36];
	(void)state;
	assert_int_equal(ldap_filter_build("(mail=%s)", "someone@example.test", 20, small, sizeof(small)),
			 LFILTER_OK);
	assert_int_equal(ldap_filter_build("(mail=%s)", "someone((((@example.test", 24, small, sizeof(small)),
			 LFILTER_TOO_LONG);
	assert_string_equal(small, "");
}

static void test_build2_and_all(void **state)
{
	(void)state;
	assert_int_equal(ldap_filter_build2("(mail=%s)", "a+x@e.test", "a@e.test", out, sizeof(out)),
			 LFILTER_OK);
	assert_string_equal(out, "(|(mail=a+x@e.test)(mail=a@e.test))");
	assert_int_equal(ldap_filter_build2("(mail=%s)", "a@e.test", "", out, sizeof(out)), LFILTER_OK);
	assert_string_equal(out, "(mail=a@e.test)");
	assert_int_equal(ldap_filter_build2("(mail=%s)", "a@e.test", "\x01@e.test", out, sizeof(out)),
			 LFILTER_IMPOSSIBLE);
	assert_int_equal(ldap_filter_build_all(ldap_filter_preset(LDAP_PRESET_OPENLDAP), out, sizeof(out)),
			 LFILTER_OK);
	assert_string_equal(out, "(|(mail=*)(mailAlternateAddress=*))");
	assert_int_equal(ldap_filter_build("(&(x=100%%)(mail=%s))", "a@e.test", 8, out, sizeof(out)),
			 LFILTER_OK);
	assert_string_equal(out, "(&(x=100%)(mail=a@e.test))");
}

static void test_template_check(void **state)
{
	char why[128];
	(void)state;
	assert_int_equal(ldap_filter_template_check("(mail=%s)", why, sizeof(why)), 0);
	assert_int_equal(ldap_filter_template_check(ldap_filter_preset(LDAP_PRESET_ACTIVE_DIRECTORY), why,
						    sizeof(why)), 0);
	assert_int_equal(ldap_filter_template_check(ldap_filter_preset(LDAP_PRESET_OPENLDAP), why,
						    sizeof(why)), 0);
	assert_int_equal(ldap_filter_template_check("(mail=john)", why, sizeof(why)), -1);
	assert_non_null(strstr(why, "%s"));
	assert_int_equal(ldap_filter_template_check("(mail=%d)", why, sizeof(why)), -1);
	assert_int_equal(ldap_filter_template_check("(mail=%s", why, sizeof(why)), -1);
	assert_int_equal(ldap_filter_template_check("(a=%s))(b=1)", why, sizeof(why)), -1);
	assert_int_equal(ldap_filter_template_check("(a=%s)(b=1)", why, sizeof(why)), -1);
	assert_int_equal(ldap_filter_template_check("mail=%s", why, sizeof(why)), -1);
	assert_int_equal(ldap_filter_template_check("", why, sizeof(why)), -1);
	assert_int_equal(ldap_filter_template_check(NULL, why, sizeof(why)), -1);
	assert_int_equal(ldap_filter_template_check("(mail=%s%)", why, sizeof(why)), -1);
}

static void test_template_of_section(void **state)
{
	struct bs_ldap l;
	(void)state;
	memset(&l, 0, sizeof(l));
	l.preset = LDAP_PRESET_OPENLDAP;
	assert_string_equal(ldap_filter_template(&l), ldap_filter_preset(LDAP_PRESET_OPENLDAP));
	l.query = (char *)(uintptr_t)"(uid=%s)";
	assert_string_equal(ldap_filter_template(&l), "(uid=%s)");
	l.query = NULL;
	l.preset = LDAP_PRESET_NONE;
	assert_null(ldap_filter_template(&l));
}

static void test_uac(void **state)
{
	(void)state;
	assert_false(ldap_filter_uac_disabled(NULL));
	assert_false(ldap_filter_uac_disabled(""));
	assert_false(ldap_filter_uac_disabled("512"));
	assert_true(ldap_filter_uac_disabled("514"));
	assert_true(ldap_filter_uac_disabled("66050"));
	assert_false(ldap_filter_uac_disabled("66048"));
	assert_false(ldap_filter_uac_disabled("12x"));
}

static void test_proxy(void **state)
{
	(void)state;
	assert_string_equal(ldap_filter_proxy_smtp("SMTP:John@example.test"), "John@example.test");
	assert_string_equal(ldap_filter_proxy_smtp("smtp:j@example.test"), "j@example.test");
	assert_string_equal(ldap_filter_proxy_smtp("sMtP:j@example.test"), "j@example.test");
	assert_null(ldap_filter_proxy_smtp("X500:/o=Org/ou=x/cn=j"));
	assert_null(ldap_filter_proxy_smtp("SIP:j@example.test"));
	assert_null(ldap_filter_proxy_smtp("smtp"));
	assert_null(ldap_filter_proxy_smtp(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_specials), cmocka_unit_test(test_build_openldap),
		cmocka_unit_test(test_build_ad),        cmocka_unit_test(test_injection),
		cmocka_unit_test(test_impossible),      cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_build2_and_all),  cmocka_unit_test(test_template_check),
		cmocka_unit_test(test_template_of_section), cmocka_unit_test(test_uac),
		cmocka_unit_test(test_proxy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
