//! The bundled example: a customer-churn data set generated from a known model, so the demo and
//! the tests have realistic data (numeric and categorical features, some missing values) without
//! shipping large files. Variants: `Drifted` shifts the inputs as a changed customer base would;
//! `NoisyLabels` replaces the labels by coin flips, a data set no model should be promoted on.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// Which population to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// The population the model is trained on.
    Normal,
    /// Shifted inputs: longer tenures, higher charges, more two-year contracts.
    Drifted,
    /// Normal inputs, labels by coin flip.
    NoisyLabels,
    /// Normal inputs, every label the opposite of what the population's rule draws (a concept
    /// that turned around: a model trained on it predicts the inverse).
    FlippedLabels,
    /// A new world: the drifted inputs, and the concept turned around as in `flipped-labels`.
    DriftedFlipped,
}

pub const CONTRACTS: [&str; 3] = ["month-to-month", "one-year", "two-year"];
pub const PAYMENTS: [&str; 4] = ["card", "bank-transfer", "electronic-check", "mailed-check"];

/// One generated customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub tenure_months: f64,
    pub monthly_charges: f64,
    pub support_calls: f64,
    pub age: Option<f64>,
    pub contract: &'static str,
    pub payment_method: &'static str,
    pub churned: bool,
}

struct Rng(ChaCha8Rng);

impl Rng {
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        // Box-Muller; the 1 - u keeps ln away from zero.
        let (u, v) = (1.0 - self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn pick<T: Copy>(&mut self, items: &[T], weights: &[f64]) -> T {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (item, w) in items.iter().zip(weights) {
            if x < *w {
                return *item;
            }
            x -= w;
        }
        *items.last().expect("non-empty")
    }
}

/// `rows` customers drawn with `seed`.
pub fn customers(rows: usize, seed: u64, variant: Variant) -> Vec<Customer> {
    let mut rng = Rng(ChaCha8Rng::seed_from_u64(seed));
    (0..rows)
        .map(|_| {
            let drifted = matches!(variant, Variant::Drifted | Variant::DriftedFlipped);
            let contract =
                if drifted { rng.pick(&CONTRACTS, &[0.1, 0.2, 0.7]) } else { rng.pick(&CONTRACTS, &[0.55, 0.25, 0.2]) };
            let payment_method = rng.pick(&PAYMENTS, &[0.3, 0.25, 0.3, 0.15]);
            let tenure_mean = if drifted { 55.0 } else { 24.0 };
            let tenure_months = (tenure_mean + 16.0 * rng.normal()).clamp(0.0, 72.0).round();
            let charge_mean = if drifted { 100.0 } else { 65.0 };
            let monthly_charges = ((charge_mean + 20.0 * rng.normal()).clamp(18.0, 120.0) * 100.0).round() / 100.0;
            let support_calls = (rng.unit() * rng.unit() * 10.0).floor();
            let age =
                if rng.unit() < 0.05 { None } else { Some((45.0 + 14.0 * rng.normal()).clamp(18.0, 90.0).round()) };
            let z = -0.4 - 0.06 * (tenure_months - 24.0) + 0.03 * (monthly_charges - 65.0) + 0.35 * support_calls
                - 0.9 * f64::from(u8::from(contract == "one-year"))
                - 1.8 * f64::from(u8::from(contract == "two-year"))
                + 0.6 * f64::from(u8::from(payment_method == "electronic-check"))
                - 0.01 * (age.unwrap_or(45.0) - 45.0);
            let p = 1.0 / (1.0 + (-z).exp());
            let churned = match variant {
                Variant::NoisyLabels => rng.unit() < 0.5,
                Variant::FlippedLabels | Variant::DriftedFlipped => rng.unit() >= p,
                Variant::Normal | Variant::Drifted => rng.unit() < p,
            };
            Customer { tenure_months, monthly_charges, support_calls, age, contract, payment_method, churned }
        })
        .collect()
}

/// The header of [`csv`].
pub const HEADER: &str = "customer_id,tenure_months,monthly_charges,support_calls,age,contract,payment_method,churned";

/// Customers as CSV with a header (an id column the spec ignores, as real exports have).
pub fn csv(rows: usize, seed: u64, variant: Variant) -> String {
    let mut out = String::with_capacity(rows * 64);
    out.push_str(HEADER);
    out.push('\n');
    for (i, c) in customers(rows, seed, variant).iter().enumerate() {
        let age = c.age.map(|a| a.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "C{seed}-{i:05},{},{},{},{age},{},{},{}\n",
            c.tenure_months,
            c.monthly_charges,
            c.support_calls,
            c.contract,
            c.payment_method,
            u8::from(c.churned)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_shaped_like_the_spec() {
        assert_eq!(csv(50, 1, Variant::Normal), csv(50, 1, Variant::Normal));
        assert_ne!(csv(50, 1, Variant::Normal), csv(50, 2, Variant::Normal));
        let text = csv(2000, 7, Variant::Normal);
        let spec = mlops_shared::spec::PipelineSpec::from_yaml(crate::EXAMPLE_SPEC).unwrap();
        let frame = mlops_data::read_datasets(&spec, &[("s".into(), text.into_bytes())]).unwrap();
        let churn_rate = frame.target.as_ref().unwrap().iter().sum::<f64>() / 2000.0;
        assert!((0.15..0.6).contains(&churn_rate), "{churn_rate}");
        let drifted = customers(2000, 7, Variant::Drifted);
        let mean = |v: &[Customer]| v.iter().map(|c| c.monthly_charges).sum::<f64>() / v.len() as f64;
        assert!(mean(&drifted) > mean(&customers(2000, 7, Variant::Normal)) + 20.0);
    }
}
