//! Reputation and credits, computed the same way on every node from the set of verdicts.
//!
//! # The rule
//!
//! Every identity starts at [`START`] (100). Each verdict moves the reputation of each worker it
//! names: [`AGREED`] +5 for a result that agreed with consensus, [`DISAGREED`] -10 for one that
//! did not, [`SILENT`] -20 for going silent on an assignment, [`FAILED`] -2 for a reported
//! failure (timeouts and out-of-memory are often the job's fault, so they cost little).
//! Reputation stays within `0..=1000`.
//!
//! To hold up against throwaway identities:
//! - **A verdict counts in proportion to its issuer's standing**: the deltas are multiplied by
//!   the issuer's weight, `standing(issuer) = min(rep/100, 1) x maturity(issuer)`, so a swarm of
//!   fresh identities issuing verdicts about each other moves almost nothing. A newcomer weighs
//!   [`NEWCOMER_WEIGHT`] (0.01).
//! - **Maturity comes from history judged by others who count**: `maturity = min(1, (1 + h) /
//!   10)^2`, where the history `h` adds up what the issuers that judged this identity's agreeing
//!   results vouched for it (next rule).
//!
//! ## No reputation from nothing
//!
//! Until this rule, each agreeing result added the issuer's weight to the worker's history, so
//! a ring of identities judging only each other compounded without bound: a few hundred free
//! entries made two keys count fully. Three limits replace it:
//! - **Only issuers that already count vouch.** An agreeing result adds to the worker's history
//!   the issuer's *vouch value* `v = (max(0, w - 0.25) / 0.75)^2` ([`vouch_value`], floor
//!   [`VOUCH_FLOOR`]): 1 for an issuer that counts fully, 0.11 at weight 0.5, nothing at or below
//!   weight 0.25 (history 4: about eight agreeing results judged by four distinct fully counting
//!   issuers). Reason: history is what makes an identity count, so only identities that already
//!   count substantially may create it; a newcomer's verdicts still move reputation (scaled by
//!   its weight, as above), they just do not make anyone count.
//! - **Diminishing returns per issuer and worker.** Each agreeing result from one issuer adds
//!   `PAIR_STEP x v` (0.5 v) to that pair's vouch, and a pair's vouch never exceeds `PAIR_CAP x v`
//!   (1.0 v), whatever the number of entries ([`PAIR_STEP`], [`PAIR_CAP`]). Reason: a worker's
//!   history then measures *how many distinct issuers that count* saw it agree, which entries
//!   signed in bulk by one issuer cannot inflate.
//! - **Reputation above a newcomer's is backed by maturity.** Gains stop at
//!   `100 + 900 x (maturity - 0.01) / 0.99` ([`Standing::ceiling`]): 100 for a newcomer, 1000 at
//!   full maturity. Reason: the selection weight grows with reputation squared, so a ring could
//!   otherwise farm reputation (each of its entries adds `5 x 0.01`) until its members were
//!   picked as often as proven workers.
//!
//! What follows, in figures (checked by the tests here and in [`crate::simulation`]):
//! - **A ring of fresh keys gains nothing**: none of its members vouches (weight 0.01 < 0.25),
//!   so every member keeps history 0, weight 0.01 and reputation at most 100, for any ring size
//!   and any number of entries.
//! - **Where it stops holding.** A ring gains from itself only once its members weigh more than
//!   0.25 through outside judges, i.e. each already has history above 4. Then, with members
//!   judging each other without limit, it converges (mean field, [`crate::simulation::ring_limit`])
//!   to full weight from ring size 25 when each member has history 4.5 from outside, 11 at 5,
//!   5 at 6, 4 at 7 and 2 at 8; below those sizes it stays at a fixed point a little above the
//!   weight its outside history gives. An attacker who wants a ring to take off must first have
//!   every member judged agreeing by at least five distinct issuers that count fully, that is,
//!   own five or more identities that matured by honest work.
//! - **Honest workers still mature.** A fresh worker judged by fully counting submitters gains
//!   0.5 history per agreeing job, at most 1.0 per submitter: it weighs 0.25, starts to vouch
//!   and can spend its grant after 8 jobs from at least 4 distinct submitters (history 4), weighs
//!   more than 0.9 after 17 jobs from at least 9 distinct submitters (history 8.5, weight 0.9025)
//!   and fully after 18 jobs from 9. Credits it earns are spendable at once.
//! - **Equivocators weigh nothing.** An issuer that signed two different verdicts for one job
//!   (the caller passes the set to [`compute_with`]) has issuer weight 0 for every entry it
//!   issued: its verdicts move no reputation and vouch for nobody, independent of which verdict
//!   arrived first. Its payments still follow the rules below.
//!
//! ## Where trust starts: the genesis identities
//!
//! A brand-new network has no identity that counts, and by the rules above nothing can tell its
//! first honest members from a ring of fresh keys: both would stay at a newcomer's weight for
//! ever, no grant would unlock and no reward could be paid. So each network names its founders,
//! as a chain names its genesis block: the identities listed with `--genesis` (the same list on
//! every node of that network; [`compute_with`]) start at history [`GENESIS_HISTORY`] (weight
//! 1, grant spendable) and may each vouch a worker up to [`GENESIS_PAIR_CAP`], so one founder
//! alone can make a worker count (eight agreeing jobs unlock its grant, eighteen make it count
//! fully). From there trust spreads by the ordinary rules: matured workers submit, judge and
//! vouch. The founders are the one trust taken on faith, not a coordinator: nothing waits on
//! them, they can go offline, and an equivocating founder drops to weight 0 like anyone. A
//! network with no genesis identities runs, but every standing stays a newcomer's and only
//! reward-0 jobs can be posted.

//! ## No credits from nothing
//!
//! Every identity starts with a grant of [`GRANT`]; each verdict moves the paid reward from its
//! issuer (the submitter) to each worker it pays.
//! - **A payment is bounded by what its issuer can spend** at that point of the canonical order
//!   ([`Standing::spendable`]). If the issuer cannot cover the whole entry's payments, all of the
//!   entry's payments are void (nobody is paid by it, [`Standing::voided`] counts it); its
//!   reputation effects still apply. Reason: an issuer that signs a reward of 10^18 must not
//!   create 10^18 credits; voiding the whole entry rather than paying some workers first keeps
//!   the outcome independent of the order workers are listed in. So no balance goes below zero
//!   and the total of all balances always equals [`GRANT`] times the identities that have a
//!   standing.
//! - **The grant is locked until others who count have judged the identity's work**: it becomes
//!   spendable once the identity's history reaches [`UNLOCK_HISTORY`] (4: weight 0.25, the point
//!   from which its own verdicts start to vouch; eight agreeing results judged by at least four
//!   distinct fully counting issuers). Credits earned by work are spendable at once. Reason: a
//!   grant anyone can spend makes every fresh key worth 50 credits; locked, a million fresh keys
//!   can promise nothing, since no key of theirs vouches for another (previous rule). Why 4 and
//!   not 1 (two results judged by one issuer): at 1, a single identity of the attacker that
//!   matured by honest work unlocks the grant of every fresh key it judges twice (50 credits per
//!   key; see the backed rings of the attack simulation). At 4 the attacker needs four identities
//!   that count fully, each 18 honest jobs judged by 9 distinct submitters that count; past that
//!   it can still unlock 50 credits per fresh key for 8 entries, which this crate does not bound
//!   (each entry still needs, at the protocol level, a live job with each worker's signed
//!   evidence).
//!
//! Workers check "can this submitter pay `reward x n`" against [`Standing::spendable`] less what
//! it has already promised to jobs in flight (the caller's count).
//!
//! The result must not depend on the order verdicts arrived in, so entries are applied in a
//! canonical order: by issue time, then by id.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::ops::Deref;

/// Reputation of a new identity (points; the scale's unit: a newcomer is 100).
pub const START: f64 = 100.0;
/// Reputation change for a result that agreed with consensus, before the issuer's weight
/// (points; the project's original scale: twenty agreeing jobs double a newcomer's reputation).
pub const AGREED: f64 = 5.0;
/// Reputation change for a result that disagreed, before the issuer's weight (points; twice an
/// agreement, so a worker that lies one job in three loses standing).
pub const DISAGREED: f64 = -10.0;
/// Reputation change for going silent on an assignment, before the issuer's weight (points;
/// the worst outcome: it stalls the job until a reserve takes over).
pub const SILENT: f64 = -20.0;
/// Reputation change for a reported failure, before the issuer's weight (points; small because
/// timeouts and out-of-memory are often the job's fault).
pub const FAILED: f64 = -2.0;
/// Highest reputation (points; ten times a newcomer's).
pub const MAX: f64 = 1000.0;
/// Credits every identity starts with (credits; the project's original grant, enough for a
/// newcomer to post a few small jobs once its grant is unlocked).
pub const GRANT: i64 = 50;
/// History after which an identity counts fully (history units, one unit being what a fully
/// counting issuer vouches for per worker, [`PAIR_CAP`]): maturity is `min(1, (1 + h) / 10)^2`,
/// so a newcomer weighs `(1/10)^2 = 0.01` and needs `h = 9` to weigh 1.
pub const MATURITY_JOBS: f64 = 10.0;
/// The issuer weight of a newcomer (no history, reputation 100): `(1 / MATURITY_JOBS)^2`.
pub const NEWCOMER_WEIGHT: f64 = 0.01;
/// Issuer weight at or below which an issuer's verdicts add nothing to anyone's history
/// (weight, `0..=1`): 0.25 is maturity at history 4, about eight agreeing results judged by
/// four distinct fully counting issuers. Chosen from the ring analysis in the module docs: a
/// ring must have every member above this weight through outside judges before it can gain
/// anything from itself.
pub const VOUCH_FLOOR: f64 = 0.25;
/// History one agreeing result adds, times the issuer's vouch value (history units): two
/// agreeing results from one fully counting issuer reach [`PAIR_CAP`].
pub const PAIR_STEP: f64 = 0.5;
/// Most history one issuer can vouch for one worker, times its vouch value (history units):
/// one unit per distinct issuer, so full maturity (`h = 9`) takes nine distinct issuers that
/// count fully.
pub const PAIR_CAP: f64 = 1.0;
/// History from which an identity's grant becomes spendable (history units): 4 is where its
/// weight reaches [`VOUCH_FLOOR`] (0.25), eight agreeing results judged by at least four
/// distinct fully counting issuers. Chosen over 1 so that one matured identity of an attacker
/// cannot unlock the grants of the fresh keys it judges (module docs).
pub const UNLOCK_HISTORY: f64 = 4.0;
/// History a genesis identity starts with (history units): `MATURITY_JOBS - 1`, so it counts
/// fully (weight 1) and its grant is spendable from the start.
///
/// A network needs identities that count before anyone can vouch (the floor above), and by
/// these rules nothing can tell the first honest members of a brand-new network from a ring of
/// fresh keys. So a network names its founders, as a chain names its genesis: the operators
/// who start it list their identities (`distributeai node --genesis <PeerId>`), every node of
/// that network lists the same ones, and they are the one trust the rules take on faith. They
/// are not a coordinator: nothing waits on them, and once others matured they matter no more
/// than any identity that counts fully. An equivocating founder still drops to weight 0.
pub const GENESIS_HISTORY: f64 = MATURITY_JOBS - 1.0;
/// Most history one genesis identity can vouch for one worker (history units): enough for a
/// founder alone to make a worker count fully (eighteen agreeing results at [`PAIR_STEP`]),
/// where any other issuer stops at [`PAIR_CAP`]. Reason: a network may start with a single
/// founder; under [`PAIR_CAP`] it could then raise nobody past history 1 (weight 0.04), and
/// nobody would ever vouch.
pub const GENESIS_PAIR_CAP: f64 = GENESIS_HISTORY;

/// How a worker did, as a verdict records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Its result agreed.
    Agreed,
    /// Its result disagreed.
    Disagreed,
    /// It reported a failure.
    Failed,
    /// It never answered.
    Silent,
}

/// One verdict, reduced to what reputation and credits need.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<P> {
    /// A unique, stable id (the verdict's content id), for canonical ordering.
    pub id: [u8; 32],
    /// Who issued it (the job's submitter).
    pub issuer: P,
    /// When it was issued (ms since the Unix epoch).
    pub issued_at: u64,
    /// Each worker, how it did, and what it was paid (credits).
    pub workers: Vec<(P, Outcome, u64)>,
}

/// Where one identity stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    /// Reputation (points), `0..=1000`.
    pub reputation: f64,
    /// Credit balance (credits), never below zero; includes the locked grant.
    pub credits: i64,
    /// Results that agreed.
    pub agreed: u64,
    /// Results that disagreed.
    pub disagreed: u64,
    /// Reported failures.
    pub failed: u64,
    /// Assignments it went silent on.
    pub silent: u64,
    /// What issuers that count vouched for its agreeing results (history units): per issuer,
    /// [`PAIR_STEP`] times the issuer's vouch value per result, at most [`PAIR_CAP`] times it.
    pub history: f64,
    /// Whether it signed two different verdicts for one job: its issuer weight is then 0.
    pub equivocated: bool,
    /// Entries it issued whose payments were void because it could not cover them.
    pub voided: u64,
}

impl Default for Standing {
    fn default() -> Self {
        Self {
            reputation: START,
            credits: GRANT,
            agreed: 0,
            disagreed: 0,
            failed: 0,
            silent: 0,
            history: 0.0,
            equivocated: false,
            voided: 0,
        }
    }
}

impl Standing {
    /// How far this identity's history lets it count, `0.01..=1`.
    pub fn maturity(&self) -> f64 {
        let m = ((1.0 + self.history) / MATURITY_JOBS).min(1.0);
        m * m
    }

    /// How much a verdict it issues counts, `0..=1`; 0 for an equivocator.
    pub fn issuer_weight(&self) -> f64 {
        if self.equivocated {
            return 0.0;
        }
        (self.reputation / START).clamp(0.0, 1.0) * self.maturity()
    }

    /// The highest reputation its maturity allows (points): 100 for a newcomer, 1000 when it
    /// counts fully. Gains stop there; losses are not affected.
    pub fn ceiling(&self) -> f64 {
        let above = ((self.maturity() - NEWCOMER_WEIGHT) / (1.0 - NEWCOMER_WEIGHT)).max(0.0);
        START + (MAX - START) * above
    }

    /// Whether its grant is spendable: its history reached [`UNLOCK_HISTORY`].
    pub fn unlocked(&self) -> bool {
        self.history >= UNLOCK_HISTORY
    }

    /// Credits held but not spendable (credits): the grant until [`Standing::unlocked`], else 0.
    pub fn locked(&self) -> i64 {
        if self.unlocked() {
            0
        } else {
            GRANT.min(self.credits.max(0))
        }
    }

    /// Credits it can promise now (credits), `>= 0`: its balance less the locked grant. A
    /// worker checks a submitter's `reward x n`, plus what it already promised to jobs in
    /// flight, against this.
    pub fn spendable(&self) -> i64 {
        (self.credits - self.locked()).max(0)
    }
}

/// What an issuer of weight `weight` adds to a worker's history per unit of vouch
/// (`0..=1`): `(max(0, weight - VOUCH_FLOOR) / (1 - VOUCH_FLOOR))^2`.
pub fn vouch_value(weight: f64) -> f64 {
    let above = ((weight - VOUCH_FLOOR) / (1.0 - VOUCH_FLOOR)).clamp(0.0, 1.0);
    above * above
}

/// The selection weight of a worker: reputation relative to a newcomer, squared so that a
/// drop costs a lot, times maturity so that throwaway identities are rarely picked. A newcomer
/// weighs 0.01.
pub fn selection_weight(standing: &Standing) -> f64 {
    let relative = standing.reputation / START;
    relative * relative * standing.maturity()
}

/// Every identity's standing, with what the rules need to remember between entries: each
/// issuer–worker pair's vouch and the equivocators. Derefs to the map of standings.
#[derive(Debug, Clone)]
pub struct Book<P> {
    standings: HashMap<P, Standing>,
    vouches: HashMap<(P, P), f64>,
    equivocators: HashSet<P>,
    genesis: HashSet<P>,
}

impl<P> Default for Book<P> {
    fn default() -> Self {
        Self {
            standings: HashMap::new(),
            vouches: HashMap::new(),
            equivocators: HashSet::new(),
            genesis: HashSet::new(),
        }
    }
}

impl<P: Eq + Hash> PartialEq for Book<P> {
    fn eq(&self, other: &Self) -> bool {
        self.standings == other.standings
            && self.vouches == other.vouches
            && self.equivocators == other.equivocators
            && self.genesis == other.genesis
    }
}

impl<P> Deref for Book<P> {
    type Target = HashMap<P, Standing>;

    fn deref(&self) -> &Self::Target {
        &self.standings
    }
}

impl<'a, P> IntoIterator for &'a Book<P> {
    type Item = (&'a P, &'a Standing);
    type IntoIter = std::collections::hash_map::Iter<'a, P, Standing>;

    fn into_iter(self) -> Self::IntoIter {
        self.standings.iter()
    }
}

impl<P> From<Book<P>> for HashMap<P, Standing> {
    fn from(book: Book<P>) -> Self {
        book.standings
    }
}

impl<P: Clone + Eq + Hash> Book<P> {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty book in which `equivocators` (issuers that signed two different verdicts for
    /// one job) have issuer weight 0.
    pub fn with_equivocators(equivocators: &HashSet<P>) -> Self {
        Self {
            equivocators: equivocators.clone(),
            ..Self::default()
        }
    }

    /// An empty book of a network whose founders are `genesis` (see [`GENESIS_HISTORY`]), in
    /// which `equivocators` have issuer weight 0.
    pub fn rooted(equivocators: &HashSet<P>, genesis: &HashSet<P>) -> Self {
        Self {
            equivocators: equivocators.clone(),
            genesis: genesis.clone(),
            ..Self::default()
        }
    }

    /// Where `identity` stands before any entry: a newcomer's standing, or a founder's for a
    /// genesis identity.
    fn initial(&self, identity: &P) -> Standing {
        Standing {
            equivocated: self.equivocators.contains(identity),
            history: if self.genesis.contains(identity) {
                GENESIS_HISTORY
            } else {
                0.0
            },
            ..Standing::default()
        }
    }

    /// Where `identity` stands (its initial standing if it appears in no entry).
    pub fn standing(&self, identity: &P) -> Standing {
        self.standings
            .get(identity)
            .copied()
            .unwrap_or_else(|| self.initial(identity))
    }

    /// Whether `identity` is one of the network's genesis identities.
    pub fn is_genesis(&self, identity: &P) -> bool {
        self.genesis.contains(identity)
    }

    /// Every identity that appears in an entry (or was seeded).
    pub fn standings(&self) -> &HashMap<P, Standing> {
        &self.standings
    }

    /// Whether `identity` is an equivocator in this book.
    pub fn is_equivocator(&self, identity: &P) -> bool {
        self.equivocators.contains(identity)
    }

    /// Sets an identity's standing directly, for simulations and tests that start from an
    /// established network. A book built from entries alone never needs it; seeding credits
    /// other than [`GRANT`] breaks the conservation of credits the rules otherwise keep.
    pub fn seed(&mut self, identity: P, standing: Standing) {
        let equivocated = standing.equivocated || self.equivocators.contains(&identity);
        self.standings.insert(
            identity,
            Standing {
                equivocated,
                ..standing
            },
        );
    }

    /// Applies `entries` on top of this book in canonical order (issue time, then id). The
    /// result is independent of the order of `entries` if the book holds no later entry.
    pub fn apply_in_order(&mut self, entries: &[Entry<P>]) {
        let mut order: Vec<&Entry<P>> = entries.iter().collect();
        order.sort_by(|a, b| a.issued_at.cmp(&b.issued_at).then(a.id.cmp(&b.id)));
        for entry in order {
            apply(self, entry);
        }
    }

    /// Total credits held (credits): [`GRANT`] times the identities with a standing, for a
    /// book built from entries.
    pub fn total_credits(&self) -> i128 {
        self.standings.values().map(|s| i128::from(s.credits)).sum()
    }

    fn standing_mut(&mut self, identity: &P) -> &mut Standing {
        let initial = self.initial(identity);
        self.standings.entry(identity.clone()).or_insert(initial)
    }

    /// Raises the vouch of `issuer` for `worker` by one agreeing result at vouch value `value`;
    /// returns the history gained.
    fn vouch(&mut self, issuer: &P, worker: &P, value: f64) -> f64 {
        let cap = if self.genesis.contains(issuer) {
            GENESIS_PAIR_CAP
        } else {
            PAIR_CAP
        };
        let held = self
            .vouches
            .entry((issuer.clone(), worker.clone()))
            .or_insert(0.0);
        let next = (*held + PAIR_STEP * value).min(cap * value);
        if next > *held {
            let gained = next - *held;
            *held = next;
            gained
        } else {
            0.0
        }
    }
}

/// Computes every identity's standing from a set of entries, independent of their order.
pub fn compute<P: Clone + Eq + Hash>(entries: &[Entry<P>]) -> Book<P> {
    compute_with(entries, &HashSet::new(), &HashSet::new())
}

/// Computes every identity's standing from a set of entries, independent of their order, with
/// `equivocators` (issuers that signed two different verdicts for one job) at issuer weight 0
/// and `genesis` (the network's founders, [`GENESIS_HISTORY`]) counting fully from the start.
pub fn compute_with<P: Clone + Eq + Hash>(
    entries: &[Entry<P>],
    equivocators: &HashSet<P>,
    genesis: &HashSet<P>,
) -> Book<P> {
    let mut book = Book::rooted(equivocators, genesis);
    book.apply_in_order(entries);
    book
}

/// Applies one entry on top of `book` (entries must come in canonical order for the result to
/// match [`compute`]).
pub fn apply<P: Clone + Eq + Hash>(book: &mut Book<P>, entry: &Entry<P>) {
    let issuer = book.standing_mut(&entry.issuer);
    let weight = issuer.issuer_weight();
    // Payments: all of the entry's or none, bounded by what the issuer can spend now.
    let owed: u128 = entry
        .workers
        .iter()
        .filter(|(worker, _, _)| *worker != entry.issuer)
        .map(|(_, _, paid)| u128::from(*paid))
        .sum();
    let can_spend = u128::try_from(issuer.spendable()).unwrap_or(0);
    let pays = owed <= can_spend;
    if pays {
        // owed <= spendable <= i64::MAX
        issuer.credits -= i64::try_from(owed).unwrap_or(0);
    } else {
        issuer.voided += 1;
    }
    let value = vouch_value(weight);

    for (worker, outcome, paid) in &entry.workers {
        if *worker == entry.issuer {
            continue; // nobody judges or pays themselves
        }
        let gained = if *outcome == Outcome::Agreed && value > 0.0 {
            book.vouch(&entry.issuer, worker, value)
        } else {
            0.0
        };
        let s = book.standing_mut(worker);
        s.history += gained;
        let delta = match outcome {
            Outcome::Agreed => {
                s.agreed += 1;
                AGREED
            }
            Outcome::Disagreed => {
                s.disagreed += 1;
                DISAGREED
            }
            Outcome::Failed => {
                s.failed += 1;
                FAILED
            }
            Outcome::Silent => {
                s.silent += 1;
                SILENT
            }
        };
        let moved = s.reputation + delta * weight;
        s.reputation = if delta > 0.0 {
            moved.min(s.ceiling().max(s.reputation))
        } else {
            moved
        }
        .clamp(0.0, MAX);
        if pays {
            s.credits += i64::try_from(*paid).unwrap_or(0); // paid <= owed <= i64::MAX
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry(id: u8, issuer: u8, at: u64, workers: &[(u8, Outcome, u64)]) -> Entry<u8> {
        Entry {
            id: [id; 32],
            issuer,
            issued_at: at,
            workers: workers.to_vec(),
        }
    }

    /// An identity that counts fully: history 20, the grant unlocked.
    fn mature() -> Standing {
        Standing {
            history: 2.0 * MATURITY_JOBS,
            ..Standing::default()
        }
    }

    #[test]
    fn newcomer_weight_is_the_default_issuer_weight() {
        let fresh = Standing::default();
        assert!((fresh.issuer_weight() - NEWCOMER_WEIGHT).abs() < 1e-12);
        assert!((selection_weight(&fresh) - NEWCOMER_WEIGHT).abs() < 1e-12);
        assert_eq!(fresh.ceiling(), START);
        assert_eq!((fresh.spendable(), fresh.locked()), (0, GRANT));
        assert_eq!(vouch_value(NEWCOMER_WEIGHT), 0.0);
        assert_eq!(vouch_value(VOUCH_FLOOR), 0.0);
        assert_eq!(vouch_value(1.0), 1.0);
    }

    #[test]
    fn base_rule_for_a_mature_issuer() {
        let mut s: Book<u8> = Book::new();
        s.seed(9, mature());
        assert!((s[&9].issuer_weight() - 1.0).abs() < 1e-12);
        for w in 1..=4 {
            s.seed(w, mature());
        }
        apply(
            &mut s,
            &entry(
                1,
                9,
                100,
                &[
                    (1, Outcome::Agreed, 10),
                    (2, Outcome::Disagreed, 0),
                    (3, Outcome::Silent, 0),
                    (4, Outcome::Failed, 0),
                ],
            ),
        );
        assert_eq!(s[&1].reputation, START + AGREED);
        assert_eq!(s[&2].reputation, START + DISAGREED);
        assert_eq!(s[&3].reputation, START + SILENT);
        assert_eq!(s[&4].reputation, START + FAILED);
        assert_eq!(s[&1].credits, GRANT + 10);
        assert_eq!(s[&9].credits, GRANT - 10);
        assert_eq!(
            (s[&1].agreed, s[&2].disagreed, s[&3].silent, s[&4].failed),
            (1, 1, 1, 1)
        );

        // A fresh issuer's verdict moves almost nothing.
        let mut fresh: Book<u8> = Book::new();
        apply(&mut fresh, &entry(2, 7, 100, &[(1, Outcome::Disagreed, 0)]));
        assert!(fresh[&1].reputation > START - 0.2);
    }

    #[test]
    fn payments_beyond_what_the_issuer_can_spend_are_void() {
        let mut book: Book<u8> = Book::new();
        book.seed(9, mature());
        // 10^18 promised by an issuer holding 50: nobody is paid, the judgment still counts.
        apply(
            &mut book,
            &entry(1, 9, 1, &[(1, Outcome::Agreed, 1_000_000_000_000_000_000)]),
        );
        assert_eq!((book[&9].credits, book[&9].voided), (GRANT, 1));
        assert_eq!(book[&1].credits, GRANT);
        assert_eq!(book[&1].agreed, 1);
        assert!(book[&1].reputation > START);
        // The whole entry or nothing: 30 + 30 > 50 voids both payments.
        apply(
            &mut book,
            &entry(
                2,
                9,
                2,
                &[(1, Outcome::Agreed, 30), (2, Outcome::Agreed, 30)],
            ),
        );
        assert_eq!((book[&1].credits, book[&2].credits), (GRANT, GRANT));
        // Exactly what it holds is fine, and leaves it at zero.
        apply(
            &mut book,
            &entry(
                3,
                9,
                3,
                &[(1, Outcome::Agreed, 25), (2, Outcome::Agreed, 25)],
            ),
        );
        assert_eq!(book[&9].credits, 0);
        assert_eq!(
            (book[&1].credits, book[&2].credits),
            (GRANT + 25, GRANT + 25)
        );
        // u64::MAX twice does not overflow into a small number.
        apply(
            &mut book,
            &entry(
                4,
                1,
                4,
                &[
                    (3, Outcome::Agreed, u64::MAX),
                    (4, Outcome::Agreed, u64::MAX),
                ],
            ),
        );
        assert_eq!(book[&3].credits, GRANT);
        assert_eq!(book.total_credits(), i128::from(GRANT) * book.len() as i128);
    }

    #[test]
    fn grant_is_locked_until_judged_by_issuers_that_count() {
        let mut book: Book<u8> = Book::new();
        for judge in 9..13 {
            book.seed(judge, mature());
        }
        // A fresh worker paid 3 credits can spend those 3 but not its grant.
        apply(&mut book, &entry(1, 9, 1, &[(1, Outcome::Agreed, 3)]));
        assert!((book[&1].history - PAIR_STEP).abs() < 1e-12);
        assert_eq!((book[&1].credits, book[&1].spendable()), (GRANT + 3, 3));
        // It tries to pay 10: void.
        apply(&mut book, &entry(2, 1, 2, &[(2, Outcome::Agreed, 10)]));
        assert_eq!((book[&1].credits, book[&1].voided), (GRANT + 3, 1));
        // Any number of jobs from one issuer stops at PAIR_CAP, short of UNLOCK_HISTORY.
        for id in 3..10 {
            apply(
                &mut book,
                &entry(id, 9, u64::from(id), &[(1, Outcome::Agreed, 3)]),
            );
        }
        assert!(!book[&1].unlocked());
        assert_eq!(book[&1].spendable(), 8 * 3);
        // Two each from three more reach it: history 4, weight 0.25.
        let mut id = 10;
        for judge in 10..13 {
            for _ in 0..2 {
                apply(
                    &mut book,
                    &entry(id, judge, u64::from(id), &[(1, Outcome::Agreed, 0)]),
                );
                id += 1;
            }
        }
        assert!(book[&1].unlocked());
        assert!((book[&1].issuer_weight() - VOUCH_FLOOR).abs() < 1e-12);
        assert_eq!(book[&1].spendable(), GRANT + 24);
        apply(&mut book, &entry(99, 1, 99, &[(2, Outcome::Agreed, 30)]));
        assert_eq!(book[&1].credits, GRANT - 6);
    }

    #[test]
    fn fresh_keys_never_gain_spendable_credits() {
        // 40 fresh keys, each entry naming every other key agreeing and paying it 1.
        let keys = 40u8;
        let mut entries = Vec::new();
        for round in 0..25u64 {
            for k in 0..keys {
                let workers: Vec<_> = (0..keys)
                    .filter(|w| *w != k)
                    .map(|w| (w, Outcome::Agreed, 1))
                    .collect();
                let mut e = entry(k, k, round, &workers);
                e.id[1] = round as u8;
                entries.push(e);
            }
        }
        let book = compute(&entries);
        for s in book.values() {
            assert_eq!(s.spendable(), 0);
            assert_eq!(s.credits, GRANT);
            assert_eq!(s.history, 0.0);
            assert_eq!(s.reputation, START);
            assert!((s.issuer_weight() - NEWCOMER_WEIGHT).abs() < 1e-12);
        }
    }

    #[test]
    fn each_issuer_vouches_at_most_pair_cap_per_worker() {
        let mut book: Book<u8> = Book::new();
        book.seed(9, mature());
        for i in 0..100u8 {
            apply(
                &mut book,
                &entry(i, 9, u64::from(i), &[(1, Outcome::Agreed, 0)]),
            );
        }
        assert!((book[&1].history - PAIR_CAP).abs() < 1e-12);
        assert_eq!(book[&1].agreed, 100);
        // Its reputation stops at what its maturity allows.
        assert!((book[&1].reputation - book[&1].ceiling()).abs() < 1e-9);
        assert!(book[&1].reputation < START + 30.0);
    }

    #[test]
    fn honest_worker_matures_after_17_jobs_from_9_mature_submitters() {
        let mut book: Book<u8> = Book::new();
        for s in 100..109u8 {
            book.seed(s, mature());
        }
        let mut job = 0u8;
        let mut weight_after = Vec::new();
        for s in 100..109u8 {
            for _ in 0..2 {
                job += 1;
                apply(
                    &mut book,
                    &entry(job, s, u64::from(job), &[(1, Outcome::Agreed, 1)]),
                );
                weight_after.push(book[&1].issuer_weight());
            }
        }
        assert!((weight_after[7] - 0.25).abs() < 1e-12, "{weight_after:?}");
        assert!(weight_after[15] <= 0.9);
        assert!(weight_after[16] > 0.9, "{weight_after:?}");
        assert!((weight_after[17] - 1.0).abs() < 1e-12);
        assert_eq!(book[&1].spendable(), GRANT + 18);
    }

    #[test]
    fn one_genesis_identity_bootstraps_a_fresh_network() {
        let genesis = HashSet::from([100u8]);
        let book: Book<u8> = Book::rooted(&HashSet::new(), &genesis);
        // The founder counts fully and can pay from the start; nobody else does.
        assert!((book.standing(&100).issuer_weight() - 1.0).abs() < 1e-12);
        assert_eq!(book.standing(&100).spendable(), GRANT);
        assert_eq!(book.standing(&1).spendable(), 0);
        // Its jobs alone raise a worker: grant unlocked after 8, full weight after 18.
        let mut entries = Vec::new();
        let mut weight_after = Vec::new();
        let mut spendable_after = Vec::new();
        for job in 1..=18u8 {
            entries.push(entry(job, 100, u64::from(job), &[(1, Outcome::Agreed, 1)]));
            let book = compute_with(&entries, &HashSet::new(), &genesis);
            weight_after.push(book[&1].issuer_weight());
            spendable_after.push(book[&1].spendable());
        }
        assert_eq!(spendable_after[6], 7, "grant still locked after 7 jobs");
        assert_eq!(spendable_after[7], GRANT + 8, "{spendable_after:?}");
        assert!((weight_after[7] - VOUCH_FLOOR).abs() < 1e-12);
        assert!((weight_after[17] - 1.0).abs() < 1e-12, "{weight_after:?}");
        // Credits stay conserved: the founder paid what the worker earned.
        let book = compute_with(&entries, &HashSet::new(), &genesis);
        assert_eq!(book.total_credits(), 2 * i128::from(GRANT));
        // The matured worker now vouches by the ordinary rule (at most PAIR_CAP per worker).
        let mut more = entries.clone();
        for i in 0..10u8 {
            more.push(entry(
                50 + i,
                1,
                100 + u64::from(i),
                &[(2, Outcome::Agreed, 0)],
            ));
        }
        let book = compute_with(&more, &HashSet::new(), &genesis);
        assert!((book[&2].history - PAIR_CAP).abs() < 1e-12);
        // The same entries with no genesis leave everyone a newcomer.
        let flat = compute(&more);
        assert!(
            flat.values()
                .all(|s| s.history == 0.0 && s.spendable() == 0)
        );
    }

    #[test]
    fn an_equivocating_founder_weighs_nothing() {
        let genesis = HashSet::from([100u8]);
        let entries: Vec<_> = (1..=18u8)
            .map(|job| entry(job, 100, u64::from(job), &[(1, Outcome::Agreed, 0)]))
            .collect();
        let book = compute_with(&entries, &HashSet::from([100]), &genesis);
        assert_eq!(book[&100].issuer_weight(), 0.0);
        assert_eq!(book[&1].history, 0.0);
        assert_eq!(book[&1].reputation, START);
    }

    #[test]
    fn an_equivocator_weighs_nothing_whenever_its_entries_arrive() {
        let mut book: Book<u8> = Book::with_equivocators(&HashSet::from([9]));
        book.seed(9, mature());
        assert_eq!(book[&9].issuer_weight(), 0.0);
        apply(
            &mut book,
            &entry(1, 9, 1, &[(1, Outcome::Agreed, 5), (2, Outcome::Silent, 0)]),
        );
        assert_eq!((book[&1].reputation, book[&1].history), (START, 0.0));
        assert_eq!(book[&2].reputation, START);
        // Its payment, within what it can spend, still stands.
        assert_eq!(book[&1].credits, GRANT + 5);
        assert!(book.standing(&9).equivocated);
    }

    /// An entry as proptest draws it: issuer, issue time, and (worker, outcome, paid) triples.
    type RawEntry = (u8, u64, Vec<(u8, u8, u64)>);

    fn entries_from(raw: &[RawEntry]) -> Vec<Entry<u8>> {
        raw.iter()
            .enumerate()
            .map(|(i, (issuer, at, ws))| {
                let workers = ws
                    .iter()
                    .map(|(w, o, paid)| {
                        let outcome = [
                            Outcome::Agreed,
                            Outcome::Disagreed,
                            Outcome::Failed,
                            Outcome::Silent,
                        ][usize::from(*o % 4)];
                        (*w, outcome, *paid)
                    })
                    .collect();
                let mut id = [0u8; 32];
                id[0] = i as u8;
                Entry {
                    id,
                    issuer: *issuer,
                    issued_at: *at,
                    workers,
                }
            })
            .collect()
    }

    /// Identities 0 and 1 start established (history 20, credits the grant): the others are
    /// fresh, so payments, vouches and unlocks all happen.
    fn seeded(equivocators: &HashSet<u8>) -> Book<u8> {
        let mut book = Book::with_equivocators(equivocators);
        book.seed(0, mature());
        book.seed(1, mature());
        book
    }

    fn payment() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..20, 0u64..200, Just(u64::MAX)]
    }

    proptest! {
        #[test]
        fn order_of_arrival_does_not_matter(
            raw in proptest::collection::vec((0u8..6, 0u64..50, proptest::collection::vec((0u8..6, 0u8..4, payment()), 0..4)), 1..30),
            equivocators in proptest::collection::hash_set(0u8..6, 0..2),
            seed in any::<u64>(),
        ) {
            let entries = entries_from(&raw);
            let mut shuffled = entries.clone();
            // A deterministic shuffle from the seed.
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = (state >> 33) as usize % (i + 1);
                shuffled.swap(i, j);
            }
            let a = compute_with(&entries, &equivocators, &HashSet::new());
            let b = compute_with(&shuffled, &equivocators, &HashSet::new());
            prop_assert_eq!(a.len(), b.len());
            for (k, v) in &a {
                prop_assert_eq!(v, &b[k]);
            }
            let mut c = seeded(&equivocators);
            c.apply_in_order(&entries);
            let mut d = seeded(&equivocators);
            d.apply_in_order(&shuffled);
            prop_assert_eq!(c.standings(), d.standings());
        }

        #[test]
        fn credits_are_conserved_and_never_negative(
            raw in proptest::collection::vec((0u8..8, 0u64..50, proptest::collection::vec((0u8..8, 0u8..4, payment()), 0..5)), 1..60),
            equivocators in proptest::collection::hash_set(0u8..8, 0..2),
        ) {
            let entries = entries_from(&raw);
            for book in [compute_with(&entries, &equivocators, &HashSet::new()), {
                let mut b = seeded(&equivocators);
                b.apply_in_order(&entries);
                b
            }] {
                prop_assert_eq!(book.total_credits(), i128::from(GRANT) * book.len() as i128);
                for (k, s) in &book {
                    prop_assert!(s.credits >= 0, "{} holds {}", k, s.credits);
                    prop_assert!(s.spendable() >= 0 && s.spendable() <= s.credits);
                    if !s.unlocked() {
                        prop_assert!(s.credits >= GRANT, "{} spent its locked grant", k);
                    }
                }
            }
            // Without established identities, nothing unlocks and nothing moves.
            let fresh = compute_with(&entries, &equivocators, &HashSet::new());
            for s in fresh.values() {
                prop_assert_eq!((s.credits, s.spendable(), s.history), (GRANT, 0, 0.0));
            }
        }
    }
}
