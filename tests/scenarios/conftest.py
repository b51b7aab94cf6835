from support.fixtures import app_trail, base_url, client, worker

__all__ = ["app_trail", "base_url", "client", "worker"]
