//! The cluster's keys and the Lua scripts that change them.
//!
//! Every change that other nodes must see in one piece is one script: Redis
//! runs a script with nothing else in between, which is what gives a room one
//! order of chats and one holder per name, whichever node asks. A script
//! touches one room's keys only, all of them sharing the hash tag `{room}`,
//! so that on a Redis Cluster a room lives in one slot.
//!
//! Keys, for cluster `C` and room `R`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `C:{R}:seq` | string | the room's last chat id |
//! | `C:{R}:log` | stream | the chats: entry id `<id>-0`, fields `j` (JSON), `t` (ts) |
//! | `C:{R}:users` | hash | name key (lower case) → `<node>/<conn> <display JSON>` |
//! | `C:{R}:order` | sorted set | display JSON, scored by join order |
//! | `C:{R}:joins` | string | the join counter behind those scores |
//! | `C:{R}:presence` | string | the number of the room's last presence change |
//! | `C:{R}` | channel | chats (`c …`) and presence (`p …`) |
//! | `C:node:<id>` | string, TTL | a node's lease |
//! | `C:nodes` | set | every node that has joined |
//! | `C:node:<id>:rooms` | set | rooms a node has had users in |
//! | `C:rooms` | set | rooms with users, for `/api/rooms` |
//! | `C:{R}:edits` | hash | chat id → the chat as edited (the stream keeps the first text) |
//! | `C:{R}:mutes`, `C:{R}:bans` | hash | name key → `{"username","until","reason"}` |
//! | `C:{R}:mode` | string | `lecture` (none: open) |
//! | `C:{R}:audit` | list | the audit log, oldest first, one JSON row each |
//!
//! What is published on a room's channel, one line each:
//! `c <node>/<conn> <id> <ts> <chat JSON>` and
//! `p <node>/<conn> <n> in <name JSON>[ <the name it replaces, JSON>]` or
//! `p <node>/<conn> <n> out <name JSON>` (a presence change, `n` the room's
//! presence number: one more than the last),
//! `m <node>/0 <ruling JSON>` (a moderation action, `judge::to_wire`), and, for one node
//! only, `r <node>/0 <n> <the roster: a JSON array of names>` (see `ROSTER`).
//!
//! A presence change names only who came or went, never the room's list:
//! a storm of N logins then publishes N short lines, not N lists of up to
//! N names. Each node rebuilds the list from the changes (the
//! dispatcher's `roster.rs`); the number `n` is how it knows it missed
//! one, and `ROSTER` is how it catches up.

use redis::{Connection, RedisResult, Script};

/// Names of keys and channels for one cluster.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(cluster: &str) -> Keys {
        Keys {
            prefix: cluster.to_string(),
        }
    }

    /// `C:{R}`: the room's channel, and the start of its keys.
    pub fn channel(&self, room: &str) -> String {
        format!("{}:{{{room}}}", self.prefix)
    }

    /// The room a channel name belongs to.
    pub fn room_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{")?
            .strip_suffix('}')
    }

    pub fn room_key(&self, room: &str, what: &str) -> String {
        format!("{}:{{{room}}}:{what}", self.prefix)
    }

    pub fn lease(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    pub fn node_rooms(&self, node: &str) -> String {
        format!("{}:node:{node}:rooms", self.prefix)
    }

    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    pub fn rooms(&self) -> String {
        format!("{}:rooms", self.prefix)
    }

    /// Every room with stored chats, scored by its last chat's time: the
    /// order in which the whole store's bound takes chats away.
    pub fn active(&self) -> String {
        format!("{}:active", self.prefix)
    }
}

/// Numbers a presence change in its room's order and publishes it; shared
/// by the scripts below.
const PRESENCE: &str = r#"
local function announce(channel, counter, holder, change)
  local n = redis.call('INCR', counter)
  redis.call('PUBLISH', channel, 'p ' .. holder .. ' ' .. n .. ' ' .. change)
end
local function holder_of(value)
  local space = string.find(value, ' ', 1, true)
  return string.sub(value, 1, space - 1), string.sub(value, space + 1)
end
"#;

/// A chat: the room's next id, the stream, the channel, at once.
/// KEYS: seq, log. ARGV: channel, holder, the chat JSON without its closing
/// brace, retain. Returns the id.
const CHAT: &str = r#"
local id = redis.call('INCR', KEYS[1])
local now = redis.call('TIME')
local ts = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
local json = ARGV[3] .. ',"id":' .. id .. ',"ts":' .. ts .. '}'
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], id .. '-0', 'j', json, 't', ts)
redis.call('PUBLISH', ARGV[1], 'c ' .. ARGV[2] .. ' ' .. id .. ' ' .. ts .. ' ' .. json)
return id
"#;

/// A login, or a rename from `old`. KEYS: users, order, joins, presence.
/// ARGV: channel, holder, name key, display JSON, old key ('' if none).
/// Returns 0 if the name is another's, 1 if the holder already had it
/// (nothing to announce: a re-announce after a blip), 2 if announced.
const CLAIM: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[3])
if current then
  local holder = holder_of(current)
  if holder ~= ARGV[2] then return 0 end
  if ARGV[5] == '' then return 1 end
end
local score = nil
local change = 'in ' .. ARGV[4]
if ARGV[5] ~= '' then
  local old = redis.call('HGET', KEYS[1], ARGV[5])
  if old then
    local holder, display = holder_of(old)
    if holder == ARGV[2] then
      score = redis.call('ZSCORE', KEYS[2], display)
      redis.call('HDEL', KEYS[1], ARGV[5])
      redis.call('ZREM', KEYS[2], display)
      change = change .. ' ' .. display
    end
  end
end
if not score then score = redis.call('INCR', KEYS[3]) end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[2] .. ' ' .. ARGV[4])
redis.call('ZADD', KEYS[2], score, ARGV[4])
announce(ARGV[1], KEYS[4], ARGV[2], change)
return 2
"#;

/// A departure. KEYS: users, order, presence. ARGV: channel, holder, name
/// key. Returns 1 if announced, 0 if the holder did not hold the name.
const RELEASE: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[3])
if not current then return 0 end
local holder, display = holder_of(current)
if holder ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[2], display)
announce(ARGV[1], KEYS[3], ARGV[2], 'out ' .. display)
return 1
"#;

/// Every user of a node whose lease has lapsed leaves the room. KEYS:
/// users, order, the node's lease, presence. ARGV: channel, node. Returns
/// how many left (0 for everyone but the first to sweep; -1 if the lease
/// is back, as the node returned meanwhile).
const SWEEP: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local entries = redis.call('HGETALL', KEYS[1])
local prefix = ARGV[2] .. '/'
local gone = 0
for i = 1, #entries, 2 do
  local holder, display = holder_of(entries[i + 1])
  if string.sub(holder, 1, #prefix) == prefix then
    redis.call('HDEL', KEYS[1], entries[i])
    redis.call('ZREM', KEYS[2], display)
    announce(ARGV[1], KEYS[4], holder, 'out ' .. display)
    gone = gone + 1
  end
end
return gone
"#;

/// The room's roster and the number of the last change it includes,
/// published for one node that has just subscribed (again), or found a
/// change missing: it comes through the channel in order with the changes,
/// so the node knows the list from there on, and can tell who came and
/// went meanwhile. KEYS: order, presence. ARGV: channel, holder
/// (`<node>/0`).
const ROSTER: &str = r#"
local names = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = redis.call('GET', KEYS[2]) or '0'
redis.call('PUBLISH', ARGV[1],
  'r ' .. ARGV[2] .. ' ' .. n .. ' [' .. table.concat(names, ',') .. ']')
return #names
"#;

/// A moderation action, judged by the courier, made if what it acts on is
/// still there, logged and published, at once: so every node hears it in
/// the room's order, after the chat it names. KEYS: log, edits, the
/// sanctions hash (mutes or bans), mode, audit. ARGV: channel, holder, op
/// (`delete`, `edit`, `set`, `unset`, `mode`, `none`), field (a chat id or
/// a name key), value, the audit row, the ruling's wire line. Returns 1 if
/// done, 0 if what it names is gone.
const MODERATE: &str = r#"
local op = ARGV[3]
if op == 'delete' or op == 'edit' then
  local entry = ARGV[4] .. '-0'
  if #redis.call('XRANGE', KEYS[1], entry, entry) == 0 then return 0 end
  if op == 'delete' then
    redis.call('XDEL', KEYS[1], entry)
    redis.call('HDEL', KEYS[2], ARGV[4])
  else
    redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
  end
elseif op == 'set' then
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
elseif op == 'unset' then
  if redis.call('HDEL', KEYS[3], ARGV[4]) == 0 then return 0 end
elseif op == 'mode' then
  redis.call('SET', KEYS[4], ARGV[5])
end
redis.call('RPUSH', KEYS[5], ARGV[6])
redis.call('PUBLISH', ARGV[1], 'm ' .. ARGV[2] .. ' ' .. ARGV[7])
return 1
"#;

/// After Redis lost its data (a restart without persistence), ids must go on
/// from the highest any node has seen, never start again. KEYS: seq. ARGV:
/// last id this node has seen. Returns the room's last id.
const SEED: &str = r#"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local seen = tonumber(ARGV[1])
if current < seen then
  redis.call('SET', KEYS[1], ARGV[1])
  return seen
end
return current
"#;

/// The scripts, compiled once (their SHA1 is what EVALSHA sends).
pub struct Scripts {
    pub chat: Script,
    pub claim: Script,
    pub release: Script,
    pub sweep: Script,
    pub seed: Script,
    pub roster: Script,
    pub moderate: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        let with_presence = |body: &str| Script::new(&format!("{PRESENCE}{body}"));
        Scripts {
            chat: Script::new(CHAT),
            claim: with_presence(CLAIM),
            release: with_presence(RELEASE),
            sweep: with_presence(SWEEP),
            seed: Script::new(SEED),
            roster: Script::new(ROSTER),
            moderate: Script::new(MODERATE),
        }
    }

    fn all(&self) -> [&Script; 7] {
        [
            &self.moderate,
            &self.chat,
            &self.claim,
            &self.release,
            &self.sweep,
            &self.seed,
            &self.roster,
        ]
    }
}

/// Loads every script into Redis's cache, so that a pipeline of EVALSHAs
/// never meets an unknown one. Done on every (re)connect: a Redis that
/// restarted has forgotten them.
pub fn load(con: &mut Connection) -> RedisResult<()> {
    for script in Scripts::new().all() {
        script.load(con)?;
    }
    Ok(())
}
