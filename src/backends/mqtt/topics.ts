/**
 * Prism topics ↔ MQTT topic names. A Prism topic's `.` tokens become MQTT
 * levels under `${prefix}/${namespace}/`; `*` becomes `+` and `>` becomes
 * `#`. Token characters MQTT gives meaning to (`/`, `+`, `#`) and the escape
 * character `%` are percent-encoded, so `a/b.c` and `a.b.c` stay different
 * topics. Namespace names cannot contain `/`, `+`, `#` or `%`.
 */
const SPECIAL = /[%/+#]/g;
const ESCAPES: Record<string, string> = { "%": "%25", "/": "%2F", "+": "%2B", "#": "%23" };

function escapeToken(t: string): string {
  return SPECIAL.test(t) ? t.replace(SPECIAL, (c) => ESCAPES[c]!) : t;
}

function unescapeToken(t: string): string {
  return t.includes("%") ? t.replace(/%(25|2F|2B|23)/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))) : t;
}

export function namespaceBase(prefix: string, ns: string): string {
  return `${prefix}/${ns}/`;
}

export function toMqttTopic(base: string, topic: string): string {
  return base + topic.split(".").map(escapeToken).join("/");
}

export function toMqttFilter(base: string, pattern: string): string {
  return (
    base +
    pattern
      .split(".")
      .map((t) => (t === "*" ? "+" : t === ">" ? "#" : escapeToken(t)))
      .join("/")
  );
}

/** null when the MQTT topic is not under base. */
export function fromMqttTopic(base: string, mqttTopic: string): string | null {
  if (!mqttTopic.startsWith(base) || mqttTopic.length === base.length) return null;
  return mqttTopic.slice(base.length).split("/").map(unescapeToken).join(".");
}
