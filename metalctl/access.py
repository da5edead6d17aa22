"""How a verb and a run reach their peers, decided once for both: credential sets and
the Ironic connection.

The CLI (``metalctl.cli.common``) and the run (``metalctl.run.inputs``) used to resolve
these each their own way. A foundation module, so both import it without a stage
importing another stage. It sits above ``credentials`` and ``logredact`` (which imports
``credentials``) rather than in either, so no import circle forms.
"""

from __future__ import annotations

from pathlib import Path

from metalctl import credentials, logredact
from metalctl.credentials import CredentialSet, Prompt
from metalctl.ironic import Ironic, IronicConfig


def credential_set(name: str, file: Path | None = None, *,
                   prompt: Prompt | None = None) -> CredentialSet:
    """Credential set ``name`` (see :func:`metalctl.credentials.resolve` for where it is
    looked for), its passwords registered for log redaction before any use.

    Raises:
        CredentialsError: nothing provides ``name``, or its source is malformed or unsafe.
    """
    cset = credentials.resolve(name, file, prompt=prompt)
    logredact.register(c.password for c in cset.entries)
    return cset


def ironic(url: str | None = None, cloud: str | None = None) -> Ironic:
    """Connect to Ironic: at ``url`` without auth (a standalone Ironic), else through
    ``cloud``'s clouds.yaml entry (``None``: openstacksdk's own ``OS_CLOUD``). A URL
    wins over a cloud name wherever both are given.

    Raises:
        IronicUnavailable: the API cannot be reached.
        IronicError: nothing configured, or the clouds.yaml entry is invalid.
    """
    return Ironic(IronicConfig(url=url) if url else IronicConfig(cloud=cloud)).connect()
