//! Budget reservations for requests in flight. A budgeted request is admitted against the month's
//! spend (every replica's finished requests) *plus* what the requests this replica is still
//! serving may cost, each reserved at an estimate when admitted and released when it ends (its
//! real cost is then in the spend). So fifty parallel streams cannot overshoot a nearly spent
//! budget by their whole cost: the overshoot is bounded by what requests cost beyond their
//! reservation, plus what other replicas admit in the same moment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ccp_schemas::events::ModelPrice;
use ccp_schemas::ids::UserId;
use rust_decimal::Decimal;

/// Input tokens assumed per byte of request body (JSON text: about 4 bytes a token; an
/// over-estimate for bodies that are mostly cached prompt, which is the safe side).
const BODY_BYTES_PER_TOKEN: u64 = 4;

/// What a request may cost, reserved while it runs: its body as uncached input and `max_tokens`
/// as output at `price`, at most `cap`.
pub fn estimate(body_bytes: usize, max_tokens: Option<u64>, price: &ModelPrice, cap: Decimal) -> Decimal {
    let input = Decimal::from(body_bytes as u64 / BODY_BYTES_PER_TOKEN);
    let output = Decimal::from(max_tokens.unwrap_or(0));
    let cost = (input * price.input_per_mtok + output * price.output_per_mtok) / Decimal::from(1_000_000);
    cost.min(cap).max(Decimal::ZERO)
}

/// The reservations of this replica, per user.
#[derive(Debug, Default)]
pub struct Reservations {
    held: Mutex<HashMap<UserId, Decimal>>,
}

/// A refused admission: what was spent and what is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Reserved by this replica's requests in flight (not counting the refused one).
    pub in_flight: Decimal,
}

impl Reservations {
    /// What `user`'s requests in flight here have reserved.
    pub fn held(&self, user: UserId) -> Decimal {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).get(&user).copied().unwrap_or_default()
    }

    /// Admits a request of `user` that may cost `amount` when `spent` + what is in flight +
    /// `amount` stays within `limit`; the reservation lasts as long as the returned guard.
    pub fn admit(
        self: &Arc<Self>,
        user: UserId,
        amount: Decimal,
        spent: Decimal,
        limit: Decimal,
    ) -> Result<Reservation, Refused> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let in_flight = held.get(&user).copied().unwrap_or_default();
        // A request that may cost nothing known is admitted while the spend is under the limit.
        if spent + in_flight + amount > limit || spent >= limit {
            return Err(Refused { in_flight });
        }
        *held.entry(user).or_default() += amount;
        Ok(Reservation { owner: self.clone(), user, amount })
    }
}

/// A request's reservation; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    owner: Arc<Reservations>,
    user: UserId,
    amount: Decimal,
}

impl Reservation {
    /// What it holds.
    pub fn amount(&self) -> Decimal {
        self.amount
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut held = self.owner.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(total) = held.get_mut(&self.user) {
            *total -= self.amount;
            if *total <= Decimal::ZERO {
                held.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn price(input: i64, output: i64) -> ModelPrice {
        ModelPrice {
            model: "m".into(),
            provider: None,
            region: None,
            input_per_mtok: Decimal::from(input),
            output_per_mtok: Decimal::from(output),
            cache_write_per_mtok: Decimal::ZERO,
            cache_read_per_mtok: Decimal::ZERO,
        }
    }

    #[test]
    fn estimates_price_the_body_and_max_tokens_up_to_the_cap() {
        // 400 KB body ≈ 100k tokens × $5 + 8k × $25, per million = $0.70.
        assert_eq!(estimate(400_000, Some(8_000), &price(5, 25), Decimal::from(10)), "0.7".parse().unwrap());
        assert_eq!(estimate(400_000, Some(8_000), &price(5, 25), Decimal::ONE / Decimal::TWO), "0.5".parse().unwrap());
        assert_eq!(estimate(0, None, &price(5, 25), Decimal::ONE), Decimal::ZERO);
    }

    #[test]
    fn admissions_count_what_is_in_flight_and_release_it() {
        let r = Arc::new(Reservations::default());
        let user = UserId::new();
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let a = r.admit(user, d("0.4"), d("0.5"), d("1")).unwrap();
        assert_eq!(r.held(user), d("0.4"));
        // 0.5 spent + 0.4 in flight + 0.2 > 1: refused, naming what is in flight.
        assert_eq!(r.admit(user, d("0.2"), d("0.5"), d("1")).unwrap_err(), Refused { in_flight: d("0.4") });
        let b = r.admit(user, d("0.1"), d("0.5"), d("1")).unwrap();
        drop(a);
        assert_eq!(r.held(user), d("0.1"));
        drop(b);
        assert_eq!(r.held(user), Decimal::ZERO);
        // Another user is not affected; a spent budget admits nothing, not even a free request.
        assert!(r.admit(UserId::new(), d("0.9"), d("0"), d("1")).is_ok());
        assert!(r.admit(user, Decimal::ZERO, d("1"), d("1")).is_err());
    }

    proptest! {
        /// However admissions interleave, what is admitted never exceeds the budget's remainder.
        #[test]
        fn admitted_reservations_never_exceed_the_remainder(amounts in prop::collection::vec(0u32..500, 1..60)) {
            let r = Arc::new(Reservations::default());
            let user = UserId::new();
            let (spent, limit) = (Decimal::from(700), Decimal::from(1000));
            let guards: Vec<_> = amounts.iter().filter_map(|a| r.admit(user, Decimal::from(*a), spent, limit).ok()).collect();
            let admitted: Decimal = guards.iter().map(|g| g.amount).sum();
            prop_assert!(spent + admitted <= limit);
            prop_assert_eq!(r.held(user), admitted);
        }
    }
}
