//! `make chaos`: the fault-injection run (see tests/src/chaos.rs). Prints what
//! happened and whether each delivery guarantee held; exits 1 if one did not.

use clap::Parser;
use pg_webhooks_tests::chaos::{run, Plan};
use pg_webhooks_tests::failover;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    about = "Commits changes while killing pollers, restarting Postgres and failing requests; checks every guarantee"
)]
struct Args {
    /// The short run of the test command instead of the full one.
    #[arg(long)]
    short: bool,
    /// Committed changes.
    #[arg(long)]
    changes: Option<usize>,
    /// Pollers SIGKILLed at random moments.
    #[arg(long)]
    kills: Option<usize>,
    /// Postgres restarts with -m immediate.
    #[arg(long)]
    restarts: Option<usize>,
    /// Pollers running at once.
    #[arg(long)]
    pollers: Option<usize>,
    /// Seed of the random faults (the same seed, the same faults).
    #[arg(long)]
    seed: Option<u64>,
    /// Skip the failover runs (a standby promoted under load, with
    /// synchronous and with asynchronous replication).
    #[arg(long, conflicts_with = "failover_only")]
    no_failover: bool,
    /// Only the failover runs.
    #[arg(long)]
    failover_only: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut plan = if args.short { Plan::short() } else { Plan::full() };
    plan.changes = args.changes.unwrap_or(plan.changes);
    plan.kills = args.kills.unwrap_or(plan.kills);
    plan.restarts = args.restarts.unwrap_or(plan.restarts);
    plan.pollers = args.pollers.unwrap_or(plan.pollers).max(1);
    plan.seed = args.seed.unwrap_or(plan.seed);
    let mut ok = args.failover_only || {
        println!(
            "chaos: {} changes over {} rows by {} writers; {} pollers, {} SIGKILLs, {} restarts -m immediate; \
             receiver answers {}% 500 and {}% too late; seed {}",
            plan.changes,
            plan.keys,
            plan.writers,
            plan.pollers,
            plan.kills,
            plan.restarts,
            plan.fail_percent,
            plan.timeout_percent,
            plan.seed
        );
        match run(&plan).await {
            Ok(report) => {
                print!("{report}");
                let violations = report.violations();
                for v in &violations {
                    println!("FAILED: {v}");
                }
                violations.is_empty()
            }
            Err(e) => {
                eprintln!("chaos: could not run: {e}");
                false
            }
        }
    };
    if !args.no_failover {
        for synchronous in [true, false] {
            let plan = if args.short {
                failover::Plan::short(synchronous)
            } else {
                failover::Plan::full(synchronous)
            };
            println!(
                "\nfailover: {} writers at {} changes/s, {} pollers on a multi-host URL; the primary killed -m immediate after {} changes, the standby promoted, {} more",
                plan.writers, plan.write_rate, plan.pollers, plan.before, plan.after
            );
            match failover::run(&plan).await {
                Ok(report) => {
                    print!("{report}");
                    for v in report.violations() {
                        println!("FAILED: {v}");
                        ok = false;
                    }
                }
                Err(e) => {
                    eprintln!("failover: could not run: {e}");
                    ok = false;
                }
            }
        }
    }
    if ok {
        println!("all guarantees held");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
