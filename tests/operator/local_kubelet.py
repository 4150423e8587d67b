"""A minimal stand-in for the kubelet: a pod the operator rendered runs as local
processes, from its own spec, so the operator's manifests run real Flower here.

What it does as a kubelet would: each volume becomes a folder (Secrets and ConfigMaps
written as files, emptyDirs empty, a claim shared by every pod that mounts it), and each
container's args and env see those folders at their mount paths. What it changes, and
only this: mount paths are rewritten to the folders in args and env (no mount namespace
here), ``medfl`` is this interpreter's, and addresses are loopback ports (the server's
``--host 0.0.0.0 --port 9091`` becomes 127.0.0.1 and a free port; the Service's DNS name
becomes that address; the server certificate names 127.0.0.1 as well as the Service).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from medfl.deploy import Supervisor, free_port
from tests.operator.cluster import Http

Manifest = dict[str, Any]


class LocalPods:
    def __init__(self, http: Http, root: Path) -> None:
        self.http, self.root = http, root
        self.claims: dict[str, Path] = {}  # claim name -> its folder, shared
        self.server_port = free_port()
        self.supervisors: list[Supervisor] = []
        self.probes: dict[str, list[str]] = {}  # pod -> its readiness probe's command

    # --- volumes -------------------------------------------------------------------

    def _claim(self, name: str) -> Path:
        return self.claims.setdefault(name, _mkdir(self.root / "claims" / name))

    def _secret_files(self, source: Manifest, folder: Path) -> None:
        secret = self.http.get("Secret", source["name"])
        assert secret is not None, f"the pod needs Secret {source['name']}"
        for item in source["items"]:
            path = folder / item["path"]
            path.write_bytes(base64.b64decode(secret["data"][item["key"]]))
            path.chmod(0o600)

    def _volume(self, volume: Manifest, pod_dir: Path) -> Path:
        if "persistentVolumeClaim" in volume:
            return self._claim(volume["persistentVolumeClaim"]["claimName"])
        folder = _mkdir(pod_dir / "volumes" / volume["name"])
        if "projected" in volume:
            for source in volume["projected"]["sources"]:
                self._secret_files(source["secret"], folder)
        elif "configMap" in volume:
            config = self.http.get("ConfigMap", volume["configMap"]["name"])
            assert config is not None
            for key, text in config["data"].items():
                (folder / key).write_text(text)
        elif "emptyDir" not in volume:
            raise NotImplementedError(f"volume {volume['name']}: {sorted(volume)}")
        return folder

    # --- processes -----------------------------------------------------------------

    def start(self, name: str, pod: Manifest) -> Supervisor:
        """Start the pod's one container; returns the supervisor of its processes."""
        pod_dir = _mkdir(self.root / "pods" / name)
        folders = {v["name"]: self._volume(v, pod_dir) for v in pod["volumes"]}
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: folders[m["name"]] for m in container["volumeMounts"]}
        args = [self._local(_remap(arg, mounts)) for arg in container["args"]]
        env = {**os.environ, **{e["name"]: _remap(e["value"], mounts) for e in container["env"]}}
        probe = (container.get("readinessProbe") or {}).get("exec")
        if probe is not None:
            self.probes[name] = [_remap(arg, mounts) for arg in probe["command"]]
        # the kubelet reads a container's termination message from this file
        env["MEDFL_TERMINATION_LOG"] = str(pod_dir / "termination-log")
        supervisor = Supervisor(pod_dir / "logs", env)
        supervisor.start(name, [*_interpreter(args[0]), *self._ports(args[1:])])
        self.supervisors.append(supervisor)
        return supervisor

    def ready(self, name: str) -> bool:
        """The pod's exec readiness probe passes (``python`` is this interpreter)."""
        command = self.probes[name]
        argv = [sys.executable, *command[1:]] if command[0] == "python" else command
        return subprocess.run(argv, check=False, timeout=30).returncode == 0

    def _local(self, arg: str) -> str:
        if arg.endswith(".svc:9091"):  # the Service's DNS name
            return f"127.0.0.1:{self.server_port}"
        return arg

    def _ports(self, args: list[str]) -> list[str]:
        out = list(args)
        if "--host" in out:  # the server
            out[out.index("--host") + 1] = "127.0.0.1"
            out[out.index("--port") + 1] = str(self.server_port)
        elif "--port" in out:  # a site's own local API
            out[out.index("--port") + 1] = str(free_port())
        return out

    def stop(self) -> None:
        for supervisor in self.supervisors:
            supervisor.stop_all()


def _interpreter(command: str) -> list[str]:
    """The image's ``medfl`` or ``python``, as this interpreter."""
    return {"medfl": [sys.executable, "-m", "medfl"], "python": [sys.executable]}[command]


def termination_message(pod_dir: Path) -> str:
    path = pod_dir / "termination-log"
    return path.read_text() if path.is_file() else ""


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _remap(text: str, mounts: dict[str, Path]) -> str:
    """A mount path in an argument (``/etc/medfl/tls/ca.pem``, ``a=/etc/medfl/tls/a.pub``)
    becomes the folder behind it; longest mount paths first."""
    for mount in sorted(mounts, key=len, reverse=True):
        if text == mount or f"{mount}/" in text:
            return text.replace(mount, str(mounts[mount]))
    return text
