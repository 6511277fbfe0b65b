/**
 * NATS-style topic patterns shared by drivers that match in process:
 * tokens split on ".", `*` matches exactly one token, `>` (last) one or more.
 */
export type TopicMatcher = (topic: string) => boolean;

export function isWildcard(pattern: string): boolean {
  return pattern.includes("*") || pattern.includes(">");
}

export function topicMatcher(pattern: string): TopicMatcher {
  if (!isWildcard(pattern)) return (topic) => topic === pattern;
  const p = pattern.split(".");
  const tail = p[p.length - 1] === ">";
  const n = tail ? p.length - 1 : p.length;
  return (topic) => {
    const t = topic.split(".");
    if (tail ? t.length <= n : t.length !== n) return false;
    for (let i = 0; i < n; i++) if (p[i] !== "*" && p[i] !== t[i]) return false;
    return true;
  };
}
