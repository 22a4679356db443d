//! Durations in query strings: `600s`, `10m`, `1h`, `1m30s`, or plain seconds (`12.5`).

/// Seconds, or `None` if malformed, negative or absurdly large.
pub fn parse_seconds(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() || text.len() > 32 {
        return None;
    }
    if let Ok(plain) = text.parse::<f64>() {
        return (plain.is_finite() && plain >= 0.0).then_some(plain);
    }
    let mut total = 0.0;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' | '.' => number.push(c),
            'h' | 'm' | 's' => {
                let value: f64 = number.parse().ok()?;
                number.clear();
                total += value
                    * match c {
                        'h' => 3600.0,
                        'm' => 60.0,
                        _ => 1.0,
                    };
            }
            _ => return None,
        }
    }
    (number.is_empty() && total.is_finite() && total <= 1e9).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_seconds("600s"), Some(600.0));
        assert_eq!(parse_seconds("5m"), Some(300.0));
        assert_eq!(parse_seconds("1m30s"), Some(90.0));
        assert_eq!(parse_seconds("1h"), Some(3600.0));
        assert_eq!(parse_seconds("2.5"), Some(2.5));
        for bad in ["", "-3", "abc", "10x", "5m3", "s", "NaN", "inf"] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
    }
}
