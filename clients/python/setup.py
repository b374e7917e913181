"""Builds the client: the gRPC stubs are generated from ``proto/`` at build time, never edited."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def proto_root() -> Path:
    """The ``proto/`` tree: the repository's, or the copy bundled in an sdist."""
    for candidate in (HERE.parent.parent / "proto", HERE / "proto"):
        if (candidate / "effigate" / "v1").is_dir():
            return candidate
    raise FileNotFoundError("proto/effigate/v1 not found next to the client package")


#: The Connect stub generator: an executable next to the interpreter's, or on ``PATH``.
CONNECT_PLUGIN = "protoc-gen-connectrpc"


def connect_plugin() -> Path | None:
    """The ``protoc-gen-connectrpc`` executable, or ``None`` when it is not installed (the
    client is then built without the Connect stubs, which only the server uses)."""
    beside = Path(sys.executable).with_name(CONNECT_PLUGIN)
    if beside.is_file():
        return beside
    found = shutil.which(CONNECT_PLUGIN)
    return Path(found) if found else None


def generate_stubs(out: Path) -> None:
    """Run protoc (grpcio-tools) for every ``effigate/v1/*.proto`` into ``out``: messages,
    gRPC stubs and, when ``protoc-gen-connectrpc`` is installed, the Connect (asyncio)
    applications ``effigate/v1/*_connect.py``."""
    import grpc_tools
    from grpc_tools import protoc

    root = proto_root()
    include = Path(grpc_tools.__file__).parent / "_proto"
    files = sorted(str(p.relative_to(root)) for p in (root / "effigate" / "v1").glob("*.proto"))
    args = [
        "protoc",
        f"-I{root}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
    ]
    plugin = connect_plugin()
    if plugin is not None:
        args += [
            f"--plugin=protoc-gen-connectrpc={plugin}",
            f"--connectrpc_out={out}",
            "--connectrpc_opt=protobuf=google,io=async",
        ]
    args += files
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + " ".join(files))
    for package in (out / "effigate", out / "effigate" / "v1"):
        (package / "__init__.py").touch()


class BuildWithStubs(build_py):
    """``build_py`` that generates the stubs first."""

    def run(self) -> None:
        generate_stubs(HERE / "src")
        super().run()


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["stubs"]:
        generate_stubs(HERE / "src")
    else:
        setup(cmdclass={"build_py": BuildWithStubs})
