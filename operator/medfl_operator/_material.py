"""TLS material and site keys, made once with medfl.deploy's own code and then kept in
Secrets: a reconcile never makes them again (a new CA would cut off every site)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from medfl.deploy import make_server_tls, make_site_key
from medfl.k8s._names import Owner
from medfl_operator._render import server_hosts


def server_files(owner: Owner) -> dict[str, bytes]:
    """A new CA and a server certificate for the SuperLink's Service names. The CA's
    private key is dropped: nothing signs anything later (sites authenticate by key)."""
    with tempfile.TemporaryDirectory(prefix="medfl-tls-") as folder:
        tls = make_server_tls(Path(folder), server_hosts(owner))
        return {
            "ca.pem": tls.ca.read_bytes(),
            "server.pem": tls.cert.read_bytes(),
            "server.key": tls.key.read_bytes(),
        }


def site_files(site: str) -> dict[str, bytes]:
    """A site's key pair: SITE.key (private) and SITE.pub."""
    with tempfile.TemporaryDirectory(prefix="medfl-key-") as folder:
        key = make_site_key(Path(folder), site)
        return {f"{site}.key": key.private.read_bytes(), f"{site}.pub": key.public.read_bytes()}
