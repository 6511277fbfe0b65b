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
start 1883 mosquitto mosquitto -d -c /etc/mosquitto/mosquitto.conf
start 3306 mariadb start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
exit 0
