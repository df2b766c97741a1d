"""What the operations endpoints ask the Celery broker: is it up, how deep is each queue."""

from kombu.exceptions import ChannelError, KombuError

from config.celery import Queue, app


class BrokerUnavailable(Exception):
    """The broker did not answer within the probe's timeout."""


def queue_depths(*, timeout: float) -> dict[str, int]:
    """Messages waiting in each queue of ``config.celery.Queue`` (0 for one never declared).

    Raises ``BrokerUnavailable`` when the broker cannot be reached within ``timeout`` seconds.
    """
    options = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    try:
        with app.connection_for_read(transport_options=options) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
            channel = connection.channel()
            try:
                return {queue.value: _depth(channel, queue.value) for queue in Queue}
            finally:
                channel.close()
    except (KombuError, OSError, *_connection_errors()) as error:
        raise BrokerUnavailable(f"{type(error).__name__}: {error}") from error


def broker_ping(*, timeout: float) -> None:
    """Raises ``BrokerUnavailable`` unless the broker answers within ``timeout`` seconds."""
    queue_depths(timeout=timeout)


def _depth(channel, queue: str) -> int:
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:
        return 0  # not declared yet: no worker or publisher has used it


def _connection_errors() -> tuple[type[BaseException], ...]:
    with app.connection_for_read() as connection:
        return tuple(connection.connection_errors) + tuple(connection.channel_errors)
