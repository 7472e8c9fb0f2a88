"""gen_ldif.py - the test directory for backstop's LDAP tests, and what backstop must make of it.

generate() returns the LDIF (an AD-like subtree ou=ad and an OpenLDAP-like subtree ou=people under
dc=example,dc=test, plus a service account) and the expected answers: which addresses a lookup
must find, which it must not, and the exact map `backstop sync` must write for each preset.
Deterministic: the same arguments give the same directory.

Run as a script to write the LDIF: gen_ldif.py OUT.ldif
"""
import random
import sys

SUFFIX = "dc=example,dc=test"
AD_BASE = "ou=ad," + SUFFIX
PEOPLE_BASE = "ou=people," + SUFFIX
SERVICE_DN = "cn=backstop,ou=service," + SUFFIX
SERVICE_PASSWORD = "svc-secret"
DOMAINS = ("example.test", "second.test")  # configured in the tests' backstop.conf
FOREIGN = "other.test"                      # in the directory, not configured

UAC_ENABLED = 512    # NORMAL_ACCOUNT
UAC_DISABLED = 514   # NORMAL_ACCOUNT | ACCOUNTDISABLE
UAC_DISABLED_NOEXPIRE = 66050


def _mixed(rng, s):
    return "".join(c.upper() if rng.random() < 0.3 else c for c in s)


class Directory:
    def __init__(self):
        self.entries = []          # list of (dn, [(attr, value), ...])
        self.ad_valid = set()      # lower-case addresses: lookup VALID (include_disabled = no)
        self.ad_disabled = set()   # only on disabled accounts: INVALID, VALID with include_disabled
        self.ad_never = set()      # X500:/SIP:-only, or in no entry: always INVALID
        self.people_valid = set()
        self.samples = {}          # named addresses for specific test cases

    def add(self, dn, attrs):
        self.entries.append((dn, attrs))

    def ldif(self):
        out = []
        for dn, attrs in self.entries:
            out.append("dn: " + dn)
            out.extend("%s: %s" % (a, v) for a, v in attrs)
            out.append("")
        return "\n".join(out) + "\n"

    def expected_sync(self, preset, include_disabled=False):
        """Sorted addresses `backstop sync` writes: configured domains only, lower case."""
        src = set()
        if preset == "active-directory":
            src = self.ad_valid | (self.ad_disabled if include_disabled else set())
        elif preset == "openldap":
            src = set(self.people_valid)
        return sorted(a for a in src if a.rsplit("@", 1)[1] in DOMAINS)


def _skeleton(d):
    d.add(SUFFIX, [("objectClass", "dcObject"), ("objectClass", "organization"),
                   ("dc", "example"), ("o", "Example")])
    for ou in ("ad", "people", "service"):
        d.add("ou=%s,%s" % (ou, SUFFIX), [("objectClass", "organizationalUnit"), ("ou", ou)])
    d.add(SERVICE_DN, [("objectClass", "person"), ("cn", "backstop"), ("sn", "service"),
                       ("userPassword", SERVICE_PASSWORD)])


def _ad_user(d, rng, i, disabled):
    dom = DOMAINS[i % 7 == 0]
    primary = "first%d.last@%s" % (i, dom)
    alias = "fl%d@%s" % (i, dom)
    attrs = [("objectClass", "user"), ("cn", "User %d" % i), ("sn", "Last%d" % i),
             ("sAMAccountName", "user%d" % i),
             ("userAccountControl", str(rng.choice((UAC_DISABLED, UAC_DISABLED_NOEXPIRE))
                                        if disabled else UAC_ENABLED)),
             ("mail", _mixed(rng, primary)),
             ("proxyAddresses", "SMTP:" + _mixed(rng, primary)),
             ("proxyAddresses", "smtp:" + _mixed(rng, alias)),
             ("proxyAddresses", "X500:/o=Example/ou=Exchange/cn=Recipients/cn=x500u%d" % i),
             ("proxyAddresses", "SIP:sipu%d@%s" % (i, dom))]
    addrs = {primary, alias}
    if i % 5 == 0:  # an address in a domain backstop does not serve
        attrs.append(("proxyAddresses", "smtp:fl%d@%s" % (i, FOREIGN)))
        addrs.add("fl%d@%s" % (i, FOREIGN))
    d.add("cn=User %d,%s" % (i, AD_BASE), attrs)
    (d.ad_disabled if disabled else d.ad_valid).update(addrs)


def _ad_others(d, rng, n_groups, n_contacts, n_folders):
    for i in range(n_groups):
        a = "group%d@example.test" % i
        d.add("cn=Group %d,%s" % (i, AD_BASE),
              [("objectClass", "group"), ("cn", "Group %d" % i),
               ("proxyAddresses", "SMTP:" + _mixed(rng, a))])
        d.ad_valid.add(a)
    for i in range(n_contacts):
        a = "contact%d@second.test" % i
        d.add("cn=Contact %d,%s" % (i, AD_BASE),
              [("objectClass", "contact"), ("cn", "Contact %d" % i), ("sn", "C%d" % i),
               ("mail", a), ("proxyAddresses", "SMTP:" + a)])
        d.ad_valid.add(a)
    for i in range(n_folders):
        a = "folder%d@example.test" % i
        d.add("cn=Folder %d,%s" % (i, AD_BASE),
              [("objectClass", "publicFolder"), ("cn", "Folder %d" % i),
               ("proxyAddresses", "SMTP:" + a)])
        d.ad_valid.add(a)


def _ad_unreachable(d, n):
    """Entries whose only addresses are X500: or SIP:, and users without any address."""
    for i in range(n):
        x500 = "x500only%d@example.test" % i
        sip = "siponly%d@example.test" % i
        d.add("cn=X500 %d,%s" % (i, AD_BASE),
              [("objectClass", "user"), ("cn", "X500 %d" % i), ("sn", "X"),
               ("userAccountControl", str(UAC_ENABLED)),
               ("proxyAddresses", "X500:" + x500), ("proxyAddresses", "x500:/o=Ex/cn=" + x500)])
        d.add("cn=SIP %d,%s" % (i, AD_BASE),
              [("objectClass", "user"), ("cn", "SIP %d" % i), ("sn", "S"),
               ("userAccountControl", str(UAC_ENABLED)), ("proxyAddresses", "SIP:" + sip)])
        d.add("cn=Nomail %d,%s" % (i, AD_BASE),
              [("objectClass", "user"), ("cn", "Nomail %d" % i), ("sn", "N"),
               ("userAccountControl", str(UAC_ENABLED))])
        d.ad_never.update({x500, sip})


def _ad_odd(d):
    """Real addresses holding filter metacharacters: found only when escaped exactly."""
    for i, a in enumerate(("star*user@example.test", "paren(x)@example.test",
                           "back\\slash@example.test")):
        d.add("cn=Odd %d,%s" % (i, AD_BASE),
              [("objectClass", "user"), ("cn", "Odd %d" % i), ("sn", "O"),
               ("userAccountControl", str(UAC_ENABLED)), ("proxyAddresses", "SMTP:" + a)])
        d.ad_valid.add(a)


def _people(d, rng, n):
    for i in range(n):
        dom = DOMAINS[i % 3 == 0]
        mail = "person%d@%s" % (i, dom)
        attrs = [("objectClass", "inetOrgPerson"), ("objectClass", "backstopMailAlternate"),
                 ("cn", "Person %d" % i), ("sn", "P%d" % i), ("uid", "person%d" % i),
                 ("mail", _mixed(rng, mail))]
        d.people_valid.add(mail)
        if i % 4 == 0:
            alt = "alt%d@%s" % (i, dom)
            attrs.append(("mailAlternateAddress", alt))
            d.people_valid.add(alt)
        if i % 9 == 0:
            attrs.append(("mailAlternateAddress", "p%d@%s" % (i, FOREIGN)))
            d.people_valid.add("p%d@%s" % (i, FOREIGN))
        d.add("uid=person%d,%s" % (i, PEOPLE_BASE), attrs)


def generate(users=3000, groups=400, contacts=400, folders=40, unreachable=150, people=1000,
             seed=5):
    rng = random.Random(seed)
    d = Directory()
    _skeleton(d)
    for i in range(users):
        _ad_user(d, rng, i, disabled=(i % 10 == 3))
    _ad_others(d, rng, groups, contacts, folders)
    _ad_unreachable(d, unreachable)
    _ad_odd(d)
    _people(d, rng, people)
    d.samples = {
        "primary": "first1.last@example.test",
        "alias": "fl1@example.test",
        "mixed": "FiRsT1.LaSt@Example.Test",
        "disabled": "first3.last@example.test",
        "disabled_alias": "fl13@example.test",
        "group": "group7@example.test",
        "contact": "contact5@second.test",
        "folder": "folder3@example.test",
        "x500": "x500only4@example.test",
        "sip": "siponly4@example.test",
        "sip_of_user": "sipu1@example.test",
        "missing": "nobody.here@example.test",
        "person": "person1@second.test" if 1 % 3 == 0 else "person1@example.test",
        "person_alt": "alt4@example.test",
        "star": "star*user@example.test",
        "paren": "paren(x)@example.test",
        "backslash": "back\\slash@example.test",
    }
    return d


if __name__ == "__main__":
    with open(sys.argv[1], "w") as f:
        f.write(generate().ldif())
