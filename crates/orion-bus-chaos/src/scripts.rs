//! The Lua scripts behind the nemesis's data faults. Each removes entries
//! and returns exactly which, atomically, each with a flag saying whether
//! the group had already acknowledged it at that moment (delivered, that
//! is at or before the group's `last-delivered-id`, and not pending). An
//! entry the group acknowledged must have been handled or dead-lettered,
//! so its removal excuses nothing.

use std::sync::LazyLock;

/// Helpers shared by the scripts: the group's state and the flag.
const PRELUDE: &str = r"
local function group_state(key, group)
  local groups = redis.pcall('XINFO', 'GROUPS', key)
  if type(groups) ~= 'table' or groups.err then return nil end
  for _, g in ipairs(groups) do
    local name, last = nil, nil
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] end
      if g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == group then
      local pending = {}
      for _, r in ipairs(redis.call('XPENDING', key, group, '-', '+', 1000000)) do
        pending[r[1]] = true
      end
      return { last = last, pending = pending }
    end
  end
  return nil
end
local function id_le(a, b)
  local ams, aseq = string.match(a, '^(%d+)%-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)%-(%d+)$')
  if ams == nil or bms == nil then return false end
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq <= bseq)
end
local function acked(state, id)
  if state == nil or state.last == nil or state.pending[id] then return 0 end
  if id_le(id, state.last) then return 1 end
  return 0
end
";

fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{PRELUDE}{body}"))
}

/// `XDEL`s each id in `ARGV[2..]` (group `ARGV[1]`); returns `{id, acked}`
/// for those that existed.
pub static XDEL: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r"
local state = group_state(KEYS[1], ARGV[1])
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('XDEL', KEYS[1], id) == 1 then out[#out + 1] = { id, acked(state, id) } end
end
return out",
    )
});

/// `XTRIM KEYS[1] MAXLEN ~ ARGV[2]` (group `ARGV[1]`); returns `{id,
/// acked}` for the entries it removed (trimming only removes from the
/// head: those before the first one left).
pub static TRIM: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local state = group_state(KEYS[1], ARGV[1])
local before = redis.call('XRANGE', KEYS[1], '-', '+')
redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[2])
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local out = {}
for _, e in ipairs(before) do
  if #first > 0 and e[1] == first[1][1] then break end
  out[#out + 1] = { e[1], acked(state, e[1]) }
end
return out",
    )
});

/// `DEL KEYS[1]` (group `ARGV[1]`); returns `{id, acked}` for the entries
/// it held.
pub static DELETE: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local state = group_state(KEYS[1], ARGV[1])
local before = redis.call('XRANGE', KEYS[1], '-', '+')
redis.call('DEL', KEYS[1])
local out = {}
for _, e in ipairs(before) do out[#out + 1] = { e[1], acked(state, e[1]) } end
return out",
    )
});

/// `XGROUP DESTROY KEYS[1] ARGV[1]`; returns `{1, pending ids...}`, or
/// `{0}` when there was no such group.
pub static DESTROY: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local rows = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000000)
if type(rows) == 'table' and rows.err then return {0} end
local out = {1}
for _, r in ipairs(rows) do out[#out + 1] = r[1] end
redis.call('XGROUP', 'DESTROY', KEYS[1], ARGV[1])
return out",
    )
});
