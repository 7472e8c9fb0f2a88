/* callout_probe.h - `backstop probe HOST:PORT ADDRESS [--sender ADDR] [--helo NAME] [--timeout 10s]`:
 * one recipient callout by hand, printing the SMTP dialogue ('>' sent, '<' received) and the
 * verdict the callout: source would give. Exit 0 valid, 1 invalid, 2 unavailable, 3 usage. */
#ifndef BACKSTOP_CALLOUT_PROBE_H
#define BACKSTOP_CALLOUT_PROBE_H

/* argv[0] is "probe". */
int callout_probe_main(int argc, char **argv);

#endif
