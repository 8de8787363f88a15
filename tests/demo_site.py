"""The demo compound (config/demo.toml) as a test site: many tests run the real gateway on it."""

from __future__ import annotations

from pathlib import Path

from edge.config import GatewayConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def demo_config(data_dir: Path) -> GatewayConfig:
    """config/demo.toml with its data in `data_dir`."""
    cfg = load_config(ROOT / "config" / "demo.toml")
    return cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": data_dir})})
