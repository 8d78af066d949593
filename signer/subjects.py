"""Client certificate subjects, as principals are matched by them.

A certificate's subject is rendered by ``cryptography`` as an RFC 4514 string, most specific
RDN first (``CN=idp,O=Acme``), with every special character escaped. A configured
``cert_subject`` is parsed into the same form once, when the settings load, and a certificate
then matches only a subject equal to it character for character: no case folding or trimming
of values, so a certificate whose CN differs by a tab, a no-break space or an escaped comma is
another identity (a looser comparison let such certificates pass as someone else).
"""

from __future__ import annotations

import re

from cryptography import x509

# An attribute type at the start or after an unescaped ``,`` or ``+``, with the spaces around it
# (RFC 4514 §3 has none; written configs often do: "CN=idp, O=Acme").
_TYPE = re.compile(r"(^|(?<!\\)[,+])\s*([A-Za-z][A-Za-z0-9-]*)\s*=")


def canonical_subject(text: str) -> str:
    """``text`` in the form a certificate's subject is rendered in; ``ValueError`` if it is not
    an RFC 4514 distinguished name ``cryptography`` can read.

    Spaces around a separator and the case of short attribute names are forgiven; values are
    taken exactly as written.
    """
    spelled = _TYPE.sub(lambda m: m.group(1) + m.group(2).upper() + "=", text.strip())
    try:
        name = x509.Name.from_rfc4514_string(spelled)
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 4514 subject such as 'CN=idp,O=Acme'") from None
    if not name.rdns:
        raise ValueError("the subject is empty")
    return name.rfc4514_string()


def certificate_subject(der: bytes) -> str:
    """The subject of a DER certificate, in the form ``canonical_subject`` gives."""
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()
