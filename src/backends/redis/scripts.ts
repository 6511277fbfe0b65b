/**
 * Every state change of the Redis driver is one of these Lua scripts: one
 * round trip, atomic. ioredis loads each once and calls it by SHA (EVALSHA,
 * falling back to EVAL after a SCRIPT FLUSH or a failover).
 *
 * Each header lists KEYS, ARGV and the return value; negative returns are
 * refusals the driver maps to PrismErrors. Keys built inside a script
 * (`ARGV[base] .. id`) always share the namespace's hash tag with KEYS[1],
 * so they live in the same Redis Cluster slot.
 */
type Arg = string | Buffer | number;
type Cmd<R> = (...args: Arg[]) => Promise<R>;

export interface ScriptCommands {
  kvGetManyBuffer: Cmd<(Buffer | null)[]>;
  kvSet: Cmd<number>;
  kvDelete: Cmd<number>;
  kvPersist: Cmd<number>;
  kvScanBuffer: Cmd<(Buffer | number)[]>;
  qEnqueue: Cmd<string>;
  qEnqueueMany: Cmd<string[]>;
  qAckMany: Cmd<number[]>;
  qDequeueBuffer: Cmd<(Buffer | number)[]>;
  qAck: Cmd<number>;
  qNack: Cmd<number>;
  qExtend: Cmd<number>;
  sAppend: Cmd<number>;
  sReadGroupBuffer: Cmd<(Buffer | number | Buffer[])[]>;
  // The *_idempotent interfaces (onceScript below): → OnceReply
  kvSetOnce: Cmd<OnceReply>;
  kvDeleteOnce: Cmd<OnceReply>;
  qEnqueueOnce: Cmd<OnceReply>;
  sAppendOnce: Cmd<OnceReply>;
  psPublishOnce: Cmd<OnceReply>;
}

/** [0, result]: the write ran; [1, hash, result]: a live record answered; [2, code]: the write refused (negative code), nothing recorded. */
export type OnceReply = [0, string] | [1, string, string] | [2, number];

/**
 * A write script made idempotent: one more key (the record, a hash with the
 * request hash `h` and the result `r`) after the script's own, and two more
 * arguments (request hash, window ms) after its own. A live record answers
 * without running the write; otherwise the write runs and, unless it refused
 * (a negative number), its result is recorded with PEXPIRE window, in the same
 * script: atomic, and one effect however many duplicates race. The wrapped
 * scripts never read #KEYS or #ARGV, so the appended ones do not disturb them.
 */
function onceScript(lua: string, numberOfKeys: number): { lua: string; numberOfKeys: number } {
  return {
    numberOfKeys: numberOfKeys + 1,
    lua: `
local rk = KEYS[${numberOfKeys + 1}]
local nargs = #ARGV
local rec = redis.call('HMGET', rk, 'h', 'r')
if rec[1] then return {1, rec[1], rec[2]} end
local function write()
${lua}
end
local out = write()
if type(out) == 'number' and out < 0 then return {2, out} end
out = tostring(out)
redis.call('HSET', rk, 'h', ARGV[nargs - 1], 'r', out)
redis.call('PEXPIRE', rk, ARGV[nargs])
return {0, out}`,
  };
}

export const SCRIPTS: Record<string, { lua: string; numberOfKeys?: number; readOnly?: boolean }> = {
  /*
   * The reads of one event-loop turn in one call (get-batch.ts). The key count
   * is the first argument. KEYS[i] kv:<key> → { v1, ver1, v2, ver2, ... },
   * nil pairs for absent (or expired) keys. Read-only: EVALSHA_RO-safe.
   */
  kvGetMany: {
    readOnly: true,
    lua: `
local out = {}
for i = 1, #KEYS do
  local r = redis.call('HMGET', KEYS[i], 'v', 'ver')
  out[2 * i - 1] = r[1]
  out[2 * i] = r[2]
end
return out`,
  },
  /*
   * KEYS[1] kv:<key> hash, KEYS[2] kvidx, KEYS[3] kvver
   * ARGV[1] value, ARGV[2] ttl ms (0: none), ARGV[3] "1": only if absent,
   * ARGV[4] expected version ("": no check, "0": must be absent), ARGV[5] key (index member)
   * → new version; -1 key exists (if-absent); -2 version mismatch
   */
  kvSet: {
    numberOfKeys: 3,
    lua: `
local cur = redis.call('HGET', KEYS[1], 'ver')
if ARGV[3] == '1' and cur then return -1 end
if ARGV[4] ~= '' then
  local e = tonumber(ARGV[4])
  if e == 0 then
    if cur then return -2 end
  elseif (not cur) or tonumber(cur) ~= e then
    return -2
  end
end
local ver = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'ver', ver)
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) else redis.call('PERSIST', KEYS[1]) end
redis.call('ZADD', KEYS[2], 0, ARGV[5])
return ver`,
  },
  /* KEYS[1] kv:<key>, KEYS[2] kvidx; ARGV[1] key → 1 deleted, 0 absent */
  kvDelete: {
    numberOfKeys: 2,
    lua: `
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])`,
  },
  /* KEYS[1] kv:<key> → 1 present (TTL removed), 0 absent */
  kvPersist: {
    numberOfKeys: 1,
    lua: `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('PERSIST', KEYS[1])
return 1`,
  },
  /*
   * KEYS[1] kvidx
   * ARGV[1] ZRANGEBYLEX min, ARGV[2] max, ARGV[3] limit, ARGV[4] "1": keys only, ARGV[5] kv key base
   * → { done (1: nothing after), last examined key, key, version, value, key, version, value, ... }
   * Index entries whose hash expired are removed as they are met; at most
   * limit + 1000 entries are examined per call (the page may then be short).
   */
  kvScan: {
    numberOfKeys: 1,
    lua: `
local limit = tonumber(ARGV[3])
local keysOnly = ARGV[4] == '1'
local out = {0, ''}
local n = 0
local examined = 0
local min = ARGV[1]
local last = ''
local done = 0
while n < limit do
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], min, ARGV[2], 'LIMIT', 0, limit - n)
  if #batch == 0 then done = 1 break end
  for i = 1, #batch do
    local k = batch[i]
    local rec
    if keysOnly then rec = {redis.call('HGET', ARGV[5] .. k, 'ver'), ''}
    else rec = redis.call('HMGET', ARGV[5] .. k, 'ver', 'v') end
    if rec[1] then
      n = n + 1
      out[#out + 1] = k
      out[#out + 1] = rec[1]
      out[#out + 1] = rec[2] or ''
    else
      redis.call('ZREM', KEYS[1], k)
    end
    last = k
  end
  min = '(' .. last
  examined = examined + #batch
  if examined >= limit + 1000 then break end
end
if done == 0 and #redis.call('ZRANGEBYLEX', KEYS[1], min, ARGV[2], 'LIMIT', 0, 1) == 0 then done = 1 end
out[1] = done
out[2] = last
return out`,
  },
  /*
   * KEYS[1] q:ready:<queue>, KEYS[2] qseq
   * ARGV[1] message key base, ARGV[2] payload, ARGV[3] attributes, ARGV[4] now ms, ARGV[5] delay ms
   * → message id (16 digits, so equal visible-at scores keep FIFO order)
   */
  qEnqueue: {
    numberOfKeys: 2,
    lua: `
local id = string.format('%016d', redis.call('INCR', KEYS[2]))
redis.call('HSET', ARGV[1] .. id, 'p', ARGV[2], 'a', ARGV[3], 'd', 0, 'r', '', 't', ARGV[4])
redis.call('ZADD', KEYS[1], tonumber(ARGV[4]) + tonumber(ARGV[5]), id)
return id`,
  },
  /*
   * qEnqueue for many messages of one queue (the enqueues of one loop turn, queue.ts):
   * KEYS as qEnqueue; ARGV[1] message key base, then per message: payload, attributes, now ms, delay ms
   * → the message ids, in order
   */
  qEnqueueMany: {
    numberOfKeys: 2,
    lua: `
local out = {}
for i = 2, #ARGV, 4 do
  local id = string.format('%016d', redis.call('INCR', KEYS[2]))
  redis.call('HSET', ARGV[1] .. id, 'p', ARGV[i], 'a', ARGV[i + 1], 'd', 0, 'r', '', 't', ARGV[i + 2])
  redis.call('ZADD', KEYS[1], tonumber(ARGV[i + 2]) + tonumber(ARGV[i + 3]), id)
  out[#out + 1] = id
end
return out`,
  },
  /*
   * qAck for many receipts of one queue (the acks of one loop turn, queue.ts), one after the other:
   * KEYS[1] q:lease:<queue>; ARGV[1] message key base, ARGV[2] now ms, then per receipt: id, receipt
   * → per receipt 1 acked, -1 stale (a receipt given twice: the second is stale)
   */
  qAckMany: {
    numberOfKeys: 1,
    lua: `
local now = tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local dl = redis.call('ZSCORE', KEYS[1], id)
  if (not dl) or tonumber(dl) <= now or redis.call('HGET', ARGV[1] .. id, 'r') ~= ARGV[i + 1] then
    out[#out + 1] = -1
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('DEL', ARGV[1] .. id)
    out[#out + 1] = 1
  end
end
return out`,
  },
  /*
   * KEYS[1] q:ready:<queue>, KEYS[2] q:lease:<queue>, KEYS[3] q:ready:<queue>.dlq
   * ARGV[1] message key base, ARGV[2] now ms, ARGV[3] max messages, ARGV[4] visibility ms,
   * ARGV[5] max deliveries, ARGV[6] receipt token
   * 1. leases whose deadline passed go back to ready (visible since their deadline);
   * 2. up to max visible messages are leased; one already delivered max-deliveries
   *    times moves to the dead-letter queue instead (delivery count reset).
   * → { id, payload, attributes, deliveries, receipt, enqueued-at, ... }
   */
  qDequeue: {
    numberOfKeys: 3,
    lua: `
local base = ARGV[1]
local now = tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
for i = 1, #expired, 2 do
  local id = expired[i]
  redis.call('ZREM', KEYS[2], id)
  redis.call('HSET', base .. id, 'r', '')
  redis.call('ZADD', KEYS[1], expired[i + 1], id)
end
local max = tonumber(ARGV[3])
local deadline = now + tonumber(ARGV[4])
local maxd = tonumber(ARGV[5])
local out = {}
local n = 0
while n < max do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, max - n)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[1], id)
    local key = base .. id
    local m = redis.call('HMGET', key, 'p', 'a', 'd', 't')
    if m[1] then
      local d = tonumber(m[3])
      if d >= maxd then
        redis.call('HSET', key, 'd', 0, 'r', '')
        redis.call('ZADD', KEYS[3], now, id)
      else
        d = d + 1
        local receipt = id .. '.' .. d .. '.' .. ARGV[6]
        redis.call('HSET', key, 'd', d, 'r', receipt)
        redis.call('ZADD', KEYS[2], deadline, id)
        n = n + 1
        out[#out + 1] = id
        out[#out + 1] = m[1]
        out[#out + 1] = m[2]
        out[#out + 1] = d
        out[#out + 1] = receipt
        out[#out + 1] = m[4]
      end
    end
  end
end
return out`,
  },
  /*
   * KEYS[1] q:lease:<queue>, KEYS[2] q:msg:<id>; ARGV[1] id, ARGV[2] receipt, ARGV[3] now ms
   * → 1 acked (message deleted); -1 stale receipt (not this lease, or the lease ran out)
   */
  qAck: {
    numberOfKeys: 2,
    lua: `
local dl = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not dl) or tonumber(dl) <= tonumber(ARGV[3]) then return -1 end
if redis.call('HGET', KEYS[2], 'r') ~= ARGV[2] then return -1 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1`,
  },
  /*
   * KEYS[1] q:lease:<queue>, KEYS[2] q:msg:<id>, KEYS[3] q:ready:<queue>
   * ARGV[1] id, ARGV[2] receipt, ARGV[3] now ms, ARGV[4] delay ms
   * → 1 released (visible again at now + delay); -1 stale receipt
   */
  qNack: {
    numberOfKeys: 3,
    lua: `
local dl = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not dl) or tonumber(dl) <= tonumber(ARGV[3]) then return -1 end
if redis.call('HGET', KEYS[2], 'r') ~= ARGV[2] then return -1 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'r', '')
redis.call('ZADD', KEYS[3], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
return 1`,
  },
  /*
   * KEYS[1] q:lease:<queue>, KEYS[2] q:msg:<id>; ARGV[1] id, ARGV[2] receipt, ARGV[3] now ms, ARGV[4] ms
   * → 1 the lease now ends at now + ms; -1 stale receipt
   */
  qExtend: {
    numberOfKeys: 2,
    lua: `
local dl = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not dl) or tonumber(dl) <= tonumber(ARGV[3]) then return -1 end
if redis.call('HGET', KEYS[2], 'r') ~= ARGV[2] then return -1 end
redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
return 1`,
  },
  /*
   * KEYS[1] s:log:<stream>, KEYS[2] s:seq:<stream>
   * ARGV[1] payload, ARGV[2] attributes, ARGV[3] now ms, ARGV[4] max records (0: none),
   * ARGV[5] age cutoff ms (0: none; records older are trimmed, up to 100 per append)
   * → the new offset. Entry ids are `${offset}-0`; fields p, a, t in that order.
   */
  sAppend: {
    numberOfKeys: 2,
    lua: `
local n = redis.call('INCR', KEYS[2])
local id = string.format('%d-0', n)
if tonumber(ARGV[4]) > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[4], id, 'p', ARGV[1], 'a', ARGV[2], 't', ARGV[3])
else
  redis.call('XADD', KEYS[1], id, 'p', ARGV[1], 'a', ARGV[2], 't', ARGV[3])
end
local cutoff = tonumber(ARGV[5])
if cutoff > 0 then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 100)
  local keep = nil
  for _, e in ipairs(old) do
    if tonumber(e[2][6]) >= cutoff then keep = e[1] break end
  end
  if keep == nil and #old > 0 then keep = string.sub(old[#old][1], 1, -2) .. '1' end
  if keep then redis.call('XTRIM', KEYS[1], 'MINID', keep) end
end
return n`,
  },
  /*
   * KEYS[1] s:log:<stream>
   * ARGV[1] group, ARGV[2] consumer, ARGV[3] count, ARGV[4] claim timeout ms
   * Creates the group at offset 0 on first use. Claims pending records idle
   * longer than the claim timeout (XAUTOCLAIM), then reads new ones (XREADGROUP >).
   * → { id, fields, delivery count, ... }
   */
  sReadGroup: {
    numberOfKeys: 1,
    lua: `
local count = tonumber(ARGV[3])
local out = {}
local n = 0
local claimed = redis.pcall('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[4], '0-0', 'COUNT', count)
if claimed.err then
  if not string.find(claimed.err, 'NOGROUP') then return claimed end
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
else
  for _, e in ipairs(claimed[2]) do
    if e and e[2] then
      local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
      out[#out + 1] = e[1]
      out[#out + 1] = e[2]
      out[#out + 1] = p[1] and p[1][4] or 1
      n = n + 1
    end
  end
end
if n < count then
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', count - n, 'STREAMS', KEYS[1], '>')
  if r then
    for _, e in ipairs(r[1][2]) do
      out[#out + 1] = e[1]
      out[#out + 1] = e[2]
      out[#out + 1] = 1
    end
  end
end
return out`,
  },
};

/* KEYS[1] channel; ARGV[1] envelope, ARGV[2] message id → the message id (published from the script: pubsub_idempotent) */
const PUBLISH = `
redis.call('PUBLISH', KEYS[1], ARGV[1])
return ARGV[2]`;

SCRIPTS.kvSetOnce = onceScript(SCRIPTS.kvSet!.lua, SCRIPTS.kvSet!.numberOfKeys!);
SCRIPTS.kvDeleteOnce = onceScript(SCRIPTS.kvDelete!.lua, SCRIPTS.kvDelete!.numberOfKeys!);
SCRIPTS.qEnqueueOnce = onceScript(SCRIPTS.qEnqueue!.lua, SCRIPTS.qEnqueue!.numberOfKeys!);
SCRIPTS.sAppendOnce = onceScript(SCRIPTS.sAppend!.lua, SCRIPTS.sAppend!.numberOfKeys!);
SCRIPTS.psPublishOnce = onceScript(PUBLISH, 1);
