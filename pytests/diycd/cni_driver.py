"""A minimal CNI runtime for tests: runs plugins with CNI_* variables and a
configuration on stdin, parses their results and errors, and runs a conflist
following the spec's chaining rules (ADD in order, each plugin getting the
previous result as prevResult; DEL in reverse order and CHECK in order, each
getting the cached result of ADD).

It speaks the protocol directly, so it can send what real runtimes do not
yet send (STATUS, GC) and malformed requests.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# pytests/diycd/cni_driver.py -> the repository root two levels up.
REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_PLUGIN_DIR = Path("/usr/lib/cni")


def find_plugin() -> Path:
    """diyc-cni: ``$DIYC_CNI``, else the main build tree's."""
    return Path(os.environ.get("DIYC_CNI", REPO_ROOT / "build" / "cni" / "diyc-cni"))


class CniPluginError(Exception):
    """A plugin exited non-zero; carries the spec's error fields."""

    def __init__(self, plugin: str, command: str, code: int | None, msg: str, details: str, raw: str) -> None:
        super().__init__(f"{plugin} {command}: code {code}: {msg}" + (f" ({details})" if details else ""))
        self.plugin = plugin
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details
        self.raw = raw


@dataclass
class CniRuntime:
    """Runs plugins: ``plugins`` maps a type to a binary, others come from ``search_dirs``."""

    plugins: dict[str, Path] = field(default_factory=dict)
    search_dirs: Sequence[Path] = (REFERENCE_PLUGIN_DIR,)
    timeout: float = 60.0

    def binary(self, plugin_type: str) -> Path:
        if plugin_type in self.plugins:
            return self.plugins[plugin_type]
        for directory in self.search_dirs:
            candidate = Path(directory) / plugin_type
            if os.access(candidate, os.X_OK):
                return candidate
        raise FileNotFoundError(f"no CNI plugin of type {plugin_type!r}")

    def cni_path(self) -> str:
        dirs = [str(Path(p).parent) for p in self.plugins.values()] + [str(d) for d in self.search_dirs]
        return os.pathsep.join(dict.fromkeys(dirs))

    def exec(self, command: str, config: Mapping[str, Any] | str | bytes, *, container_id: str | None = None,
             netns: str | None = None, ifname: str | None = "eth0", args: str | None = None,
             env: Mapping[str, str] | None = None, plugin_type: str | None = None) -> subprocess.CompletedProcess[str]:
        """Runs one plugin once; returns the finished process as is."""
        if isinstance(config, Mapping):
            plugin_type = plugin_type or str(config.get("type", "diyc"))
            stdin = json.dumps(config)
        else:
            stdin = config.decode() if isinstance(config, bytes) else config
        plugin_type = plugin_type or "diyc"
        variables = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_PATH": self.cni_path()}
        for name, value in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns), ("CNI_IFNAME", ifname),
                            ("CNI_ARGS", args)):
            if value is not None:
                variables[name] = value
        variables.update(env or {})
        return subprocess.run([str(self.binary(plugin_type))], input=stdin, capture_output=True, text=True,
                              env=variables, timeout=self.timeout, check=False)

    def run(self, command: str, config: Mapping[str, Any] | str | bytes, **kwargs: Any) -> dict[str, Any] | None:
        """Runs one plugin; returns its parsed stdout (None when empty) or raises CniPluginError."""
        proc = self.exec(command, config, **kwargs)
        plugin = kwargs.get("plugin_type") or (config.get("type", "diyc") if isinstance(config, Mapping) else "diyc")
        out = proc.stdout.strip()
        if proc.returncode != 0:
            try:
                error = json.loads(out)
            except ValueError:
                raise CniPluginError(plugin, command, None, out or proc.stderr.strip(), "", out) from None
            raise CniPluginError(plugin, command, error.get("code"), error.get("msg", ""), error.get("details", ""),
                                 out)
        return json.loads(out) if out else None

    # -- conflists

    def _plugin_config(self, conflist: Mapping[str, Any], plugin: Mapping[str, Any],
                       runtime_config: Mapping[str, Any], prev_result: Mapping[str, Any] | None) -> dict[str, Any]:
        """The spec's derivation of one plugin's configuration from a conflist."""
        config = dict(plugin)
        config["name"] = conflist["name"]
        config["cniVersion"] = conflist["cniVersion"]
        capabilities = plugin.get("capabilities", {})
        wanted = {key: value for key, value in runtime_config.items() if capabilities.get(key)}
        config.pop("capabilities", None)
        if wanted:
            config["runtimeConfig"] = wanted
        if prev_result is not None:
            config["prevResult"] = prev_result
        return config

    def add_list(self, conflist: Mapping[str, Any], *, container_id: str, netns: str, ifname: str = "eth0",
                 args: str | None = None, runtime_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] | None = None
        for plugin in conflist["plugins"]:
            config = self._plugin_config(conflist, plugin, runtime_config or {}, result)
            result = self.run("ADD", config, container_id=container_id, netns=netns, ifname=ifname, args=args)
        assert result is not None, "the last plugin of the chain printed no result"
        return result

    def check_list(self, conflist: Mapping[str, Any], cached: Mapping[str, Any], *, container_id: str, netns: str,
                   ifname: str = "eth0", runtime_config: Mapping[str, Any] | None = None) -> None:
        for plugin in conflist["plugins"]:
            config = self._plugin_config(conflist, plugin, runtime_config or {}, cached)
            self.run("CHECK", config, container_id=container_id, netns=netns, ifname=ifname)

    def del_list(self, conflist: Mapping[str, Any], cached: Mapping[str, Any] | None, *, container_id: str,
                 netns: str | None, ifname: str = "eth0", runtime_config: Mapping[str, Any] | None = None) -> None:
        for plugin in reversed(conflist["plugins"]):
            config = self._plugin_config(conflist, plugin, runtime_config or {}, cached)
            self.run("DEL", config, container_id=container_id, netns=netns, ifname=ifname)
