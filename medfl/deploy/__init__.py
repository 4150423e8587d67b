"""Deployment plumbing (public): Flower's SuperLink / SuperNode processes, their TLS
material and site keys, and the ``flwr`` CLI. Used by the local backend and by the
``medfl server`` / ``medfl site`` / ``medfl submit`` commands."""

from medfl.deploy._exits import describe_exit
from medfl.deploy._files import (
    DEPLOYMENT_DIR,
    LOST_SITES_FILE,
    allow_rounds_after,
    allowed_after,
    lost_sites,
    request_stop,
    stop_requested,
    write_lost_sites,
)
from medfl.deploy._flower import FlowerCli, ServerCommand, SiteCommand, app_dir, write_run_config
from medfl.deploy._processes import (
    Role,
    Supervisor,
    ended,
    flower_env,
    free_port,
    process_tree,
    wait_for_port,
)
from medfl.deploy._tls import (
    ServerTls,
    SiteKey,
    check_server_tls,
    make_server_tls,
    make_site_key,
)

__all__ = [
    "DEPLOYMENT_DIR",
    "LOST_SITES_FILE",
    "FlowerCli",
    "Role",
    "ServerCommand",
    "ServerTls",
    "SiteCommand",
    "SiteKey",
    "Supervisor",
    "allow_rounds_after",
    "allowed_after",
    "app_dir",
    "check_server_tls",
    "describe_exit",
    "ended",
    "flower_env",
    "free_port",
    "lost_sites",
    "make_server_tls",
    "make_site_key",
    "process_tree",
    "request_stop",
    "stop_requested",
    "wait_for_port",
    "write_lost_sites",
    "write_run_config",
]
