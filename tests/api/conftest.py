from tests.support.fixtures import app_trail, base_url, client, thread_worker

__all__ = ["app_trail", "base_url", "client", "thread_worker"]
