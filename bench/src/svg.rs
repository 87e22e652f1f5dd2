//! A small SVG writer for the percentile plot: latency against percentile, the percentile
//! axis logarithmic in 1/(1 − p) as in HdrHistogram's plotter (0 %, 90 %, 99 %, 99.9 % …
//! equally spaced), latency on a logarithmic axis too, so a 20 µs baseline and a 20 ms tail
//! fit on one chart. No dependency: the SVG is text.

use std::fmt::Write;

use hdrhistogram::Histogram;

const W: f64 = 900.0;
const H: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] =
    ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

/// One curve: (1/(1 − p), latency in ns) points.
#[derive(Debug, Clone)]
pub struct Curve {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Curve {
    /// The percentile curve of `h` (HdrHistogram's quantile iteration, 5 ticks per half
    /// distance, as the `.hgrm` files), ending at the max with 1/(1 − p) = the count.
    pub fn from_histogram(name: &str, h: &Histogram<u64>) -> Curve {
        let mut points = Vec::new();
        if !h.is_empty() {
            let last = h.len() as f64;
            for v in h.iter_quantiles(5) {
                let q = v.quantile_iterated_to();
                let x = if q >= 1.0 { last } else { (1.0 / (1.0 - q)).min(last) };
                points.push((x, h.highest_equivalent(v.value_iterated_to()) as f64));
            }
        }
        Curve { name: name.to_string(), points }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn latency_label(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{} µs", ns / 1e3)
    } else {
        format!("{ns} ns")
    }
}

/// Draws the curves on one chart.
pub fn plot(title: &str, curves: &[Curve]) -> String {
    let all = curves.iter().flat_map(|c| c.points.iter());
    let (mut x_max, mut y_min, mut y_max) = (10.0f64, f64::MAX, 0.0f64);
    for &(x, y) in all {
        x_max = x_max.max(x);
        y_min = y_min.min(y.max(1.0));
        y_max = y_max.max(y);
    }
    if y_max == 0.0 {
        (y_min, y_max) = (1e3, 1e6);
    }
    let decades_x = x_max.log10().ceil().clamp(1.0, 7.0);
    let (ylo, yhi) = (y_min.log10().floor(), y_max.log10().ceil().max(y_min.log10().floor() + 1.0));
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + x.max(1.0).log10().min(decades_x) / decades_x * pw;
    let sy = |y: f64| TOP + ph - (y.max(1.0).log10() - ylo) / (yhi - ylo) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + pw / 2.0,
        esc(title)
    );
    // Grid and axis labels.
    for d in 0..=decades_x as i32 {
        let x = sx(10f64.powi(d));
        let label = match d {
            0 => "0%".to_string(),
            d => format!("{}%", 100.0 - 100.0 / 10f64.powi(d)),
        };
        let _ =
            writeln!(s, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##, TOP + ph);
        let _ =
            writeln!(s, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#, TOP + ph + 18.0);
    }
    for d in ylo as i32..=yhi as i32 {
        let y = sy(10f64.powi(d));
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            LEFT + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            latency_label(10f64.powi(d))
        );
    }
    let _ =
        writeln!(s, r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + pw / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">latency (log scale)</text>"#,
        TOP + ph / 2.0
    );
    for (i, c) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = c.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = W - RIGHT + 15.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/>"#,
            lx + 22.0
        );
        let _ = writeln!(s, r#"<text x="{}" y="{}">{}</text>"#, lx + 28.0, ly + 4.0, esc(&c.name));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_is_well_formed_svg_with_every_curve() {
        let mut a = crate::track::new_histogram();
        let mut b = crate::track::new_histogram();
        for i in 1..=10_000u64 {
            a.record(20_000 + i).unwrap();
            b.record(1_000_000 + 50 * i).unwrap();
        }
        let svg =
            plot("t <1>", &[Curve::from_histogram("engine", &b), Curve::from_histogram("quic-echo", &a)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("t &lt;1&gt;") && svg.contains("99.99%") && svg.contains("quic-echo"));
        let c = Curve::from_histogram("x", &a);
        assert!(c.points.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }
}
