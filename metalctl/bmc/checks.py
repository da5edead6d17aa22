"""Read-only probes the BMC audit makes of a Redfish service (no inventory): does it
answer without credentials, with random credentials, and does its certificate verify.
Through the guarded transport (one origin, bounded, deadline) like every BMC request."""

from __future__ import annotations

import requests

from metalctl.bmc.http import BmcSession, Deadline
from metalctl.bmc.probe import warnings_silenced
from metalctl.budget import Budget
from metalctl.errors import BmcTLSError, BmcUnreachable


def status_of(base_url: str, address: str, path: str, verify: bool | str,
              auth: tuple[str, str] | None, budget: Budget) -> int:
    """The HTTP status of ``GET base_url + path`` (with ``auth`` as HTTP Basic, or none).

    Raises:
        BmcTLSError: the certificate did not verify.
        BmcUnreachable: no answer.
        BmcError: a redirect elsewhere, an oversized body, the deadline.
    """
    deadline = Deadline(budget.deadline_s)
    try:
        with warnings_silenced(verify), BmcSession(base_url, address, deadline) as session:
            resp = session.get(base_url + path, auth=auth, verify=verify,
                               timeout=(budget.connect_timeout_s, budget.read_timeout_s))
            return resp.status_code
    except requests.exceptions.SSLError:
        raise BmcTLSError(address=address, reason="certificate not verified") from None
    except requests.exceptions.RequestException as exc:
        raise BmcUnreachable(address=address, reason=type(exc).__name__) from None
    finally:
        deadline.cancel()
