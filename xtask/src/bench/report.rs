//! The results as a table: the median of each figure per server and their ratio.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{LOAD_CPU, SERVER_CPU, Scenario, Server};

/// The floor's medians, to read the broadcast's CPU per delivery against.
pub(super) fn floor_report(floors: &[Value]) -> String {
    if floors.is_empty() {
        return String::new();
    }
    let figure = |name: &str| {
        median(
            &floors
                .iter()
                .map(|floor| floor[name].as_f64().unwrap_or(f64::NAN))
                .collect::<Vec<_>>(),
        )
    };
    format!(
        "\nLoopback floor (`herald-load floor`: a plain loop writing a 200-byte frame to each of \
         10,000 loopback connections, 10 events/s, no server; medians of {} runs): {} µs CPU per \
         write; one event's fan-out {} ms median, {} ms slowest.\n",
        floors.len(),
        format_value(figure("cpu_per_write_us")),
        format_value(figure("fan_out_median_ms")),
        format_value(figure("fan_out_max_ms")),
    )
}

/// One figure across runs: unit, which way is better, Herald's and nchan's values, and whether
/// any was measured with the load generator saturated.
type Figure = (String, String, Vec<f64>, Vec<f64>, bool);

/// The median of each figure per server, and the ratio, as a Markdown table.
pub(super) fn report(
    results: &[(String, Server, Value)],
    scenarios: &[&Scenario],
    reps: usize,
) -> String {
    let mut table = String::from(
        "| scenario | figure | herald | nchan | herald / nchan |\n|---|---|---|---|---|\n",
    );
    let mut flagged = Vec::new();
    for scenario in scenarios {
        let mut figures: BTreeMap<String, Figure> = BTreeMap::new();
        let mut order = Vec::new();
        let mut loadgen = [0f64; 2];
        for (name, server, outcome) in results {
            if name != scenario.name {
                continue;
            }
            let slot = usize::from(*server == Server::Nchan);
            let share = outcome["loadgen_cpu_share"].as_f64().unwrap_or(0.0);
            loadgen[slot] = loadgen[slot].max(share);
            for metric in outcome["metrics"].as_array().into_iter().flatten() {
                let figure = metric["name"].as_str().unwrap_or("?").to_owned();
                let entry = figures.entry(figure.clone()).or_insert_with(|| {
                    order.push(figure.clone());
                    (
                        metric["unit"].as_str().unwrap_or("").to_owned(),
                        metric["better"].as_str().unwrap_or("").to_owned(),
                        Vec::new(),
                        Vec::new(),
                        false,
                    )
                });
                let value = metric["value"].as_f64().unwrap_or(f64::NAN);
                if *server == Server::Herald {
                    entry.2.push(value);
                } else {
                    entry.3.push(value);
                }
                entry.4 |= metric["saturated"].as_bool().unwrap_or(false);
            }
        }
        for figure in order {
            let (unit, better, herald, nchan, saturated) = &figures[&figure];
            let (h, n) = (median(herald), median(nchan));
            let ratio = if better == "zero" || n == 0.0 {
                "-".to_owned()
            } else {
                format!("{:.2}x", h / n)
            };
            let mark = if *saturated {
                flagged.push(format!("{} / {figure}", scenario.name));
                " (saturated)"
            } else {
                ""
            };
            table.push_str(&format!(
                "| {} | {figure}{} | {} | {} | {ratio}{mark} |\n",
                scenario.name,
                if unit.is_empty() {
                    String::new()
                } else {
                    format!(" ({unit})")
                },
                format_value(h),
                format_value(n),
            ));
        }
        table.push_str(&format!(
            "| {} | load generator CPU share (max) | {:.0}% | {:.0}% | - |\n",
            scenario.name,
            loadgen[0] * 100.0,
            loadgen[1] * 100.0
        ));
    }
    table.push_str(&format!(
        "\nMedians of {reps} repetition(s). Load generator on CPU {LOAD_CPU}, servers on CPU {SERVER_CPU}.\n"
    ));
    if !flagged.is_empty() {
        table.push_str(&format!(
            "Measured with the load generator above 90% of its CPU (not to be quoted): {}\n",
            flagged.join("; ")
        ));
    }
    table
}

fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

fn format_value(value: f64) -> String {
    if !value.is_finite() {
        "-".to_owned()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}
