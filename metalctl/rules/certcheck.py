"""Certificate checks for audit: parse, expiry window, issued by the given CA."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def check_certificate(pem: str, ca_pem: str | None, days: int) -> tuple[str | None, str]:
    """Return (problem or None, summary)."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        return f"not a PEM certificate ({exc})", ""
    now = dt.datetime.now(dt.timezone.utc)
    end = cert.not_valid_after_utc
    summary = f"subject {cert.subject.rfc4514_string()}, expires {end:%Y-%m-%d}"
    if end <= now:
        return f"expired on {end:%Y-%m-%d}", summary
    if cert.not_valid_before_utc > now:
        return f"not valid before {cert.not_valid_before_utc:%Y-%m-%d}", summary
    if end <= now + dt.timedelta(days=days):
        return f"expires in {(end - now).days} day(s) ({end:%Y-%m-%d})", summary
    if ca_pem:
        try:
            ca = x509.load_pem_x509_certificate(ca_pem.split("-----END CERTIFICATE-----")[0]
                                                .encode() + b"-----END CERTIFICATE-----\n")
            key = ca.public_key()
            if cert.issuer != ca.subject:
                return f"issued by {cert.issuer.rfc4514_string()}, not the installed CA", summary
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                           cert.signature_hash_algorithm)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - any verification failure is the finding
            return f"does not chain to the installed CA ({type(exc).__name__})", summary
    return None, summary
