//! The ledger under random histories: donations paid or not, notifications replayed,
//! refunds, chargebacks and payouts in any order keep every balance equal to its entries
//! and to what a plain model of the money says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::model::UserRole;
use crate::realtime::bus::MemoryBus;

struct World {
    payments: Payments,
    streamers: Vec<User>,
    donor: User,
    _dir: tempfile::TempDir,
}

async fn world(streamers: usize) -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        &format!("sqlite://{}", dir.path().join("t.db").display()),
        4,
    )
    .await
    .unwrap();
    let metrics = crate::metrics::CpMetrics::new(&potok_service::Metrics::new());
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
    let notifications = Arc::new(Notifications::new(db.clone(), Arc::clone(&bus)));
    let chat = Arc::new(Chat::new(
        db.clone(),
        potok_config::ChatConfig::default(),
        Arc::clone(&bus),
        Arc::clone(&notifications),
        metrics.clone(),
    ));
    let mut cfg = PaymentsConfig::default();
    cfg.fraud.per_donor_per_hour = 100_000;
    cfg.fraud.per_address_per_hour = 100_000;
    cfg.fraud.per_card_per_hour = 100_000;
    if let Some(rub) = cfg.currencies.get_mut("RUB") {
        rub.per_donor_per_day = 1_000_000_000_000;
    }
    let payments = Payments::new(
        db.clone(),
        cfg,
        "http://potok.test".into(),
        chat,
        notifications,
        bus,
        metrics,
    )
    .await
    .unwrap();
    let mut list = Vec::new();
    for i in 0..streamers {
        list.push(
            db.create_user(&format!("s{i}"), "h", UserRole::Streamer)
                .await
                .unwrap(),
        );
    }
    let donor = db
        .create_user("donor", "h", UserRole::Viewer)
        .await
        .unwrap();
    World {
        payments,
        streamers: list,
        donor,
        _dir: dir,
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Donate `amount` to streamer `to`; the payer pays (or not); the provider notifies
    /// `notifications` times.
    Donate {
        to: usize,
        amount: i64,
        paid: bool,
        notifications: u8,
    },
    /// Notify again about the `n`-th donation so far.
    Renotify(usize),
    /// Refund the `n`-th donation.
    Refund(usize),
    /// Charge back the `n`-th donation (with a case number that may repeat).
    Chargeback(usize, u8),
    /// Pay streamer `who` out `amount`.
    Payout { who: usize, amount: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 100..200_000i64, any::<bool>(), 1..4u8)
            .prop_map(|(to, amount, paid, notifications)| Op::Donate { to, amount, paid, notifications }),
        2 => (0..30usize).prop_map(Op::Renotify),
        1 => (0..30usize).prop_map(Op::Refund),
        1 => (0..30usize, 0..3u8).prop_map(|(n, r)| Op::Chargeback(n, r)),
        1 => (0..3usize, 100..150_000i64).prop_map(|(who, amount)| Op::Payout { who, amount }),
    ]
}

/// What the money should be, kept without the ledger.
#[derive(Default)]
struct Model {
    /// (donation id, streamer index, share, state: 0 pending/failed, 1 completed, 2 reversed)
    donations: Vec<(String, usize, i64, u8)>,
    balances: [i64; 3],
}

async fn run(ops: Vec<Op>) {
    let w = world(3).await;
    let p = &w.payments;
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Donate {
                to,
                amount,
                paid,
                notifications,
            } => {
                let req = DonationRequest {
                    amount: Some(amount),
                    ..DonationRequest::default()
                };
                let started = p
                    .start(&w.streamers[to].username, Some(&w.donor), "10.0.0.1", req)
                    .await
                    .unwrap();
                let id = started.donation.id.clone();
                let pid = p.provider_id(&id).await.unwrap().unwrap();
                p.sandbox
                    .as_ref()
                    .unwrap()
                    .settle(&pid, paid, Some("4111"))
                    .await
                    .unwrap();
                for _ in 0..notifications {
                    p.sync_payment(&pid).await.unwrap();
                }
                let share = started.donation.streamer_share;
                if paid {
                    m.balances[to] += share;
                }
                m.donations.push((id, to, share, u8::from(paid)));
            }
            Op::Renotify(n) => {
                if let Some((id, ..)) = m.donations.get(n) {
                    let pid = p.provider_id(id).await.unwrap().unwrap();
                    assert_ne!(p.sync_payment(&pid).await.unwrap(), Outcome::Credited);
                }
            }
            Op::Refund(n) => {
                if let Some(d) = m.donations.get_mut(n) {
                    let r = p.refund(&d.0, "test").await;
                    match d.3 {
                        1 => {
                            assert_eq!(r.unwrap(), Outcome::Refunded);
                            m.balances[d.1] -= d.2;
                            d.3 = 2;
                        }
                        2 => assert_eq!(r.unwrap(), Outcome::Unchanged),
                        _ => assert!(r.is_err()),
                    }
                }
            }
            Op::Chargeback(n, case) => {
                if let Some(d) = m.donations.get_mut(n) {
                    let r = p.chargeback(&d.0, &format!("CB-{n}-{case}"), "bank").await;
                    match d.3 {
                        1 => {
                            assert_eq!(r.unwrap(), Outcome::Refunded);
                            m.balances[d.1] -= d.2;
                            d.3 = 2;
                        }
                        _ => assert!(!matches!(r, Ok(Outcome::Refunded))),
                    }
                }
            }
            Op::Payout { who, amount } => {
                let r = p
                    .payout(&w.streamers[who], amount, "RUB", "sbp", "+79990001122")
                    .await;
                if m.balances[who] >= amount {
                    assert_eq!(r.unwrap().status, "completed");
                    m.balances[who] -= amount;
                } else {
                    assert_eq!(r.unwrap_err().code, StreamingErrorCode::WithdrawalFailed);
                }
            }
        }
    }
    for (i, s) in w.streamers.iter().enumerate() {
        let b = p.balance(&s.id, "RUB").await.unwrap();
        assert_eq!(b.balance, m.balances[i], "streamer {i}");
    }
    let r = ledger::reconcile(&p.db).await.unwrap();
    assert!(r.ok(), "{r:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_keep_every_balance_equal_to_its_entries(ops in proptest::collection::vec(op(), 1..30)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(ops));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_donations_to_one_streamer_lose_nothing() {
    let w = Arc::new(world(1).await);
    let mut tasks = Vec::new();
    for i in 0..40i64 {
        let w = Arc::clone(&w);
        tasks.push(tokio::spawn(async move {
            let p = &w.payments;
            let req = DonationRequest {
                amount: Some(1_000 + i),
                ..DonationRequest::default()
            };
            let d = p
                .start("s0", Some(&w.donor), "10.0.0.2", req)
                .await
                .unwrap();
            let pid = p.provider_id(&d.donation.id).await.unwrap().unwrap();
            p.sandbox
                .as_ref()
                .unwrap()
                .settle(&pid, true, None)
                .await
                .unwrap();
            // Two notifications race for each payment.
            let (a, b) = tokio::join!(p.sync_payment(&pid), p.sync_payment(&pid));
            let credited = [a.unwrap(), b.unwrap()]
                .iter()
                .filter(|o| **o == Outcome::Credited)
                .count();
            assert_eq!(credited, 1);
            d.donation.streamer_share
        }));
    }
    let mut expected = 0;
    for t in tasks {
        expected += t.await.unwrap();
    }
    let p = &w.payments;
    assert_eq!(
        p.balance(&w.streamers[0].id, "RUB").await.unwrap().balance,
        expected
    );
    let r = ledger::reconcile(&p.db).await.unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.postings, 40);
}

#[tokio::test]
async fn reconcile_finds_a_balance_an_entry_or_a_posting_that_is_off() {
    let w = world(1).await;
    let p = &w.payments;
    let mut ids = Vec::new();
    for amount in [1_000, 2_000] {
        let req = DonationRequest {
            amount: Some(amount),
            ..DonationRequest::default()
        };
        let d = p
            .start("s0", Some(&w.donor), "10.0.0.3", req)
            .await
            .unwrap();
        let pid = p.provider_id(&d.donation.id).await.unwrap().unwrap();
        p.sandbox
            .as_ref()
            .unwrap()
            .settle(&pid, true, None)
            .await
            .unwrap();
        assert_eq!(p.sync_payment(&pid).await.unwrap(), Outcome::Credited);
        ids.push(d.donation.id);
    }
    assert!(ledger::reconcile(&p.db).await.unwrap().ok());
    let pool = p.db.pool();
    let streamer = Account::Streamer(&w.streamers[0].id).id("RUB");
    sqlx::query("UPDATE ledger_accounts SET balance = balance + 1 WHERE id = $1")
        .bind(&streamer)
        .execute(pool)
        .await
        .unwrap();
    let r = ledger::reconcile(&p.db).await.unwrap();
    assert_eq!(r.mismatched_accounts, std::slice::from_ref(&streamer));
    assert_eq!(r.total, 1);
    sqlx::query("UPDATE ledger_accounts SET balance = balance - 1 WHERE id = $1")
        .bind(&streamer)
        .execute(pool)
        .await
        .unwrap();
    // An entry changed: its posting no longer sums to zero (and the account disagrees).
    sqlx::query(
        "UPDATE ledger_entries SET amount = amount + 5 WHERE account_id = $1 AND posting_id = \
         (SELECT id FROM ledger_postings WHERE posting_key = $2)",
    )
    .bind(&streamer)
    .bind(format!("donation:{}:credit", ids[0]))
    .execute(pool)
    .await
    .unwrap();
    let r = ledger::reconcile(&p.db).await.unwrap();
    assert_eq!(
        r.unbalanced_postings,
        [format!("donation:{}:credit", ids[0])]
    );
    assert_eq!(r.mismatched_accounts, [streamer]);
    // A completed donation whose posting is gone.
    sqlx::query("DELETE FROM ledger_postings WHERE posting_key = $1")
        .bind(format!("donation:{}:credit", ids[1]))
        .execute(pool)
        .await
        .unwrap();
    let r = ledger::reconcile(&p.db).await.unwrap();
    assert!(r.donations_without_postings.contains(&ids[1]), "{r:?}");
    assert!(!r.ok());
}
