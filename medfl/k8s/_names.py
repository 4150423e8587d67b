"""Names and labels of an experiment's children, all within Kubernetes' 63 characters."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MAX_NAME = 63  # a DNS label: Services, Jobs (their pods carry the name as a label), labels
_DIGEST = 8


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_DIGEST]


def fit(text: str, suffix: str = "") -> str:
    """``text-suffix`` if it fits in 63 characters; otherwise ``text`` cut short and a
    hash of the whole of it, so two long names that share a beginning still differ."""
    name = f"{text}-{suffix}" if suffix else text
    if len(name) <= MAX_NAME:
        return name
    tail = f"-{_digest(text)}" + (f"-{suffix}" if suffix else "")
    return text[: MAX_NAME - len(tail)].rstrip("-") + tail


@dataclass(frozen=True)
class Owner:
    """The FederatedExperiment the children belong to."""

    name: str
    namespace: str
    uid: str
    generation: int = 1

    @property
    def base(self) -> str:
        """The prefix of every child's name. A Service name must start with a letter;
        an experiment's name may start with a digit."""
        return self.name if self.name[0].isalpha() else f"fe-{self.name}"

    @property
    def label(self) -> str:
        """The experiment's name as a label value (at most 63 characters)."""
        return fit(self.name)

    def child(self, suffix: str) -> str:
        return fit(self.base, suffix)

    @property
    def server(self) -> str:
        """The SuperLink's Deployment and Service."""
        return self.child("server")

    @property
    def server_tls(self) -> str:
        return self.child("tls")

    @property
    def spec_config(self) -> str:
        return self.child("spec")

    @property
    def submit_job(self) -> str:
        return self.child("submit")

    def site(self, site: str) -> str:
        """The site's SuperNode Deployment and its key's Secret."""
        return self.child(f"site-{site}")

    def site_key(self, site: str) -> str:
        return self.child(f"key-{site}")

    @property
    def server_address(self) -> str:
        """Where sites and the submission reach the SuperLink (the Service's DNS name,
        which the server certificate names)."""
        return f"{self.server}.{self.namespace}.svc"

    @property
    def results_path(self) -> str:
        """The run folder inside the results claim: one per experiment object (the uid
        keeps a re-created experiment of the same name from finding the old result.json)."""
        return f"{self.namespace}/{self.name}-{self.uid[:8]}"
