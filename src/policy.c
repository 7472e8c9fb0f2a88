/* policy.c - placeholder until its owner fills it in. */
typedef int policy_placeholder_t;
