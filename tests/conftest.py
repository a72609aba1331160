"""Shared fixtures: a throwaway site on disk and the real command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from publisher.config import Config, load_config
from tests.databases import postgres_schema, postgres_url, store_url  # noqa: F401
from tests.smtp_server import smtp_server  # noqa: F401  (a real SMTP server, for any test)

REPO = Path(__file__).resolve().parent.parent
# The real seed post, as the project keeps it: the tests stand on the repository alone.
SEED = REPO / "posts" / "2025-09-07-ms-aws-cloud-ai.md"


@dataclass
class Site:
    """A site folder with a config.yaml and a posts/ folder."""

    root: Path
    settings: dict[str, Any]

    @classmethod
    def create(cls, root: Path, site: dict[str, Any], /, **sections: Any) -> Site:
        """A new site folder at ``root``: an empty posts/ and a config.yaml of the ``site``
        section and ``sections``."""
        (root / "posts").mkdir(parents=True)
        made = cls(root, {"site": site})
        made.write_config(**sections)
        return made

    @property
    def posts(self) -> Path:
        return self.root / "posts"

    @property
    def output(self) -> Path:
        return self.root / "public"

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    def write_config(self, **sections: Any) -> None:
        """Merge ``sections`` into the settings and rewrite config.yaml."""
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(self.settings.get(key), dict):
                self.settings[key].update(value)
            else:
                self.settings[key] = value
        self.config_path.write_text(yaml.safe_dump(self.settings, allow_unicode=True), "utf-8")

    def config(self) -> Config:
        return load_config(self.config_path)

    def post(self, name: str, front: str, body: str = "Hello.\n") -> Path:
        """Write posts/<name> from front matter text (without fences) and a body."""
        path = self.posts / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"---\n{textwrap.dedent(front).strip()}\n---\n{body}", "utf-8")
        return path

    def run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run the real ``publisher`` command in this site's folder."""
        return run_publisher(*args, cwd=self.root, **kwargs)


def run_publisher(
    *args: str, cwd: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m publisher ARGS`` from the working tree, as a user would run it."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "publisher", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """An empty site at example.com in Asia/Tokyo; add posts with ``site.post``."""
    return Site.create(
        tmp_path / "site",
        {
            "title": "Test Site",
            "url": "https://example.com",
            "description": "A site for tests",
            "language": "ja",
            "author": "Site Author",
            "timezone": "Asia/Tokyo",
        },
    )


@pytest.fixture
def seed_site(site: Site) -> Site:
    """The site with the real seed post (the project's posts/2025-09-07-ms-aws-cloud-ai.md)."""
    (site.posts / "2025-09-07-ms-aws.md").write_bytes(SEED.read_bytes())
    return site
