//! ISO 4217 currency codes a revenue amount may be given in: the codes of List One in use in
//! 2025, without the funds, precious metals and testing codes (`XAU`, `XDR`, `XTS`, `XXX`, …)
//! and without the codes withdrawn before 2023; codes replaced since (`HRK`→`EUR` aside) are
//! kept beside their successors so that a sender still on the old code is not refused.
//! Amounts are stored in units of 1/10,000 whatever the currency's minor unit (no currency
//! has more than 4 decimals: `CLF` has 4, `BHD`, `KWD` 3, `JPY` 0).

/// Sorted, so lookups are binary searches (a test checks the order).
pub const CODES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW",
    "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
    "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
];

/// Whether `code` is one of [`CODES`] (upper case, as ISO 4217 writes them).
pub fn is_known(code: &str) -> bool {
    CODES.binary_search(&code).is_ok()
}

/// Largest amount accepted: 14 integer digits and 4 decimals fit `Decimal(18, 4)`.
pub const MAX_INTEGER_DIGITS: usize = 14;
pub const MAX_FRACTION_DIGITS: usize = 4;

/// An amount's decimal text (`19.90`, `1000`, `0.0001`: digits, optionally a point and 1-4
/// more digits; no sign, exponent or spaces) as an exact count of 1/10,000 units. `None` for
/// anything else, or more than 14 integer digits.
pub fn parse_amount_e4(text: &str) -> Option<i64> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || int.len() > MAX_INTEGER_DIGITS {
        return None;
    }
    let mut e4: i64 = int.parse::<i64>().ok()?.checked_mul(10_000)?;
    if let Some(f) = frac {
        if !digits(f) || f.len() > MAX_FRACTION_DIGITS {
            return None;
        }
        let scaled: i64 = format!("{f:0<4}").parse().ok()?;
        e4 += scaled;
    }
    Some(e4)
}

/// An exact amount of 1/10,000 units as decimal text with 4 decimals (`199000` → `19.9000`).
pub fn format_e4(e4: i128) -> String {
    let sign = if e4 < 0 { "-" } else { "" };
    let a = e4.unsigned_abs();
    format!("{sign}{}.{:04}", a / 10_000, a % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codes_are_sorted_unique_upper_case_and_without_test_codes() {
        assert!(CODES.windows(2).all(|w| w[0] < w[1]));
        assert!(
            CODES
                .iter()
                .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
        for code in ["EUR", "USD", "JPY", "CHF", "KWD", "CLF", "XOF"] {
            assert!(is_known(code), "{code}");
        }
        for code in ["XAU", "XTS", "XXX", "eur", "EU", "EURO", "BTC", "HRK"] {
            assert!(!is_known(code), "{code}");
        }
        assert!(CODES.len() > 150, "{}", CODES.len());
    }

    #[test]
    fn amounts_are_exact_decimals_or_refused() {
        assert_eq!(parse_amount_e4("19.90"), Some(199_000));
        assert_eq!(parse_amount_e4("19.9"), Some(199_000));
        assert_eq!(parse_amount_e4("0.0001"), Some(1));
        assert_eq!(parse_amount_e4("1000"), Some(10_000_000));
        assert_eq!(
            parse_amount_e4("99999999999999.9999"),
            Some(999_999_999_999_999_999)
        );
        for bad in [
            "",
            ".5",
            "5.",
            "-1",
            "+1",
            "1e3",
            "1.23456",
            "123456789012345",
            " 1",
            "1,5",
            "0x10",
            "١٢",
        ] {
            assert_eq!(parse_amount_e4(bad), None, "{bad:?}");
        }
        assert_eq!(format_e4(199_000), "19.9000");
        assert_eq!(format_e4(1), "0.0001");
        assert_eq!(format_e4(-15_000), "-1.5000");
    }
}
