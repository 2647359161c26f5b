//! Split DNS: which upstream pool a question goes to. Names in a `[[forward]]`
//! zone (or below it) go to that zone's servers, the longest matching zone
//! winning; everything else goes to `[upstream]`. Each pool keeps its own RTT
//! and health state.

use super::Upstream;
use crate::wire;

pub struct Routes {
    default: Upstream,
    /// Longest zone first, so the first match is the most specific.
    zones: Vec<(Box<[u8]>, Upstream)>,
}

impl Routes {
    /// `zones` are lower-case plain wire names with their pools.
    pub fn new(default: Upstream, mut zones: Vec<(Vec<u8>, Upstream)>) -> Routes {
        zones.sort_by_key(|(zone, _)| std::cmp::Reverse(zone.len()));
        Routes {
            default,
            zones: zones
                .into_iter()
                .map(|(zone, upstream)| (zone.into_boxed_slice(), upstream))
                .collect(),
        }
    }

    /// The pool for `name` (a plain wire name, any case).
    pub fn for_name(&self, name: &[u8]) -> &Upstream {
        self.zones
            .iter()
            .find(|(zone, _)| wire::is_at_or_below(name, zone))
            .map_or(&self.default, |(_, upstream)| upstream)
    }

    /// Every pool with its zone (lower-case wire name), `[upstream]` first with none.
    pub fn pools(&self) -> impl Iterator<Item = (Option<&[u8]>, &Upstream)> {
        std::iter::once((None, &self.default)).chain(
            self.zones
                .iter()
                .map(|(zone, upstream)| (Some(&zone[..]), upstream)),
        )
    }

    /// Carries over, pool by pool (same zone), the state of servers that
    /// `previous` also had: RTT, health, counters, open connections.
    pub fn inherit(&self, previous: &Routes) {
        self.default.inherit(&previous.default);
        for (zone, pool) in &self.zones {
            if let Some((_, old)) = previous.zones.iter().find(|(old, _)| old == zone) {
                pool.inherit(old);
            }
        }
    }

    /// The `[upstream]` pool (the one a watched resolv.conf updates).
    pub fn default_pool(&self) -> &Upstream {
        &self.default
    }
}
