#!/usr/bin/env bash
# Starts each local backend service the test suites use, if it is not already
# answering on its port. Idempotent: safe to run any number of times.
#   PostgreSQL 127.0.0.1:5432 · Redis 6379 · NATS+JetStream 4222 · RabbitMQ 5672 · Mosquitto 1883 · MariaDB 3306
set -u

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2 i
  for i in $(seq 1 60); do up "$port" && return 0; sleep 1; done
  echo "start-services: $name did not come up on port $port" >&2
  return 1
}

start() {
  local port=$1 name=$2; shift 2
  if up "$port"; then echo "start-services: $name already up on $port"; return 0; fi
  if ! command -v "$1" >/dev/null 2>&1; then echo "start-services: $name is not installed ($1 missing); its tests will report it" >&2; return 0; fi
  echo "start-services: starting $name"
  "$@" >/dev/null 2>&1 || true
  wait_port "$port" "$name"
}

start 5432 postgresql pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql 2>/dev/null | head -1)" main start
start 6379 redis redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
start 4222 nats start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
start 5672 rabbitmq rabbitmq-server -detached
# An open port is not a working broker: RabbitMQ accepts TCP while it is still recovering its
# queues, and a broker wedged that way never answers AMQP. Check that it sends Connection.Start
# (frame type 1) after the protocol header; if not within 60 s, restart it, and if it is still
# silent, reset it (this is the tests' local broker: its queues are test queues).
amqp_answers() {
  local b
  b=$(timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672 && printf "AMQP\x00\x00\x09\x01" >&3 && head -c 1 <&3 | od -An -tu1' 2>/dev/null | tr -d ' ')
  [ "$b" = "1" ]
}
wait_amqp() {
  local i
  for i in $(seq 1 "$1"); do amqp_answers && return 0; sleep 1; done
  return 1
}
if command -v rabbitmqctl >/dev/null 2>&1 && up 5672 && ! wait_amqp 60; then
  echo "start-services: rabbitmq accepts TCP but does not answer AMQP; restarting it" >&2
  timeout 60 rabbitmqctl stop_app >/dev/null 2>&1 || true
  timeout 60 rabbitmqctl start_app >/dev/null 2>&1 || true
  if ! wait_amqp 60; then
    echo "start-services: rabbitmq still silent; resetting it (drops its queues)" >&2
    timeout 60 rabbitmqctl stop_app >/dev/null 2>&1 || true
    timeout 120 rabbitmqctl force_reset >/dev/null 2>&1 || true
    timeout 60 rabbitmqctl start_app >/dev/null 2>&1 || true
    wait_amqp 60 || echo "start-services: rabbitmq does not answer AMQP; its tests will fail" >&2
  fi
fi

start 1883 mosquitto mosquitto -d -c /etc/mosquitto/mosquitto.conf
start 3306 mariadb start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
exit 0
