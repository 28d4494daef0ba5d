//! The `groupResource` patterns of resource modifiers: Velero's globs with `.` as the
//! separator (`*` stays within one part, `**` crosses parts, `?` is one character, `{a,b}`
//! is either). `deployments.apps`, `*.apps`, `persistentvolumeclaims`, `**`.

/// A compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupResourceGlob {
    /// The pattern with its `{a,b}` alternatives expanded.
    alternatives: Vec<Vec<Token>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`: any one character but `.`.
    One,
    /// `*`: any run of characters without `.`.
    Part,
    /// `**`: any run of characters.
    Any,
}

/// Most alternatives one pattern may expand to.
const MAX_ALTERNATIVES: usize = 64;

impl GroupResourceGlob {
    /// Compiles `pattern`; refuses unbalanced braces, character classes (`[...]`) and
    /// patterns expanding to too many alternatives.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.contains(['[', ']']) {
            return Err(format!(
                "groupResource {pattern:?}: character classes ([...]) are not supported; use *, ?, ** or {{a,b}}"
            ));
        }
        let expanded = expand(pattern)?;
        Ok(Self {
            alternatives: expanded.iter().map(|p| tokens(p)).collect(),
        })
    }

    /// Whether `group_resource` (`pods`, `deployments.apps`) matches.
    pub fn matches(&self, group_resource: &str) -> bool {
        let text: Vec<char> = group_resource.chars().collect();
        self.alternatives.iter().any(|t| matches(t, &text))
    }
}

/// Expands the first `{a,b}` group, recursively.
fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err(format!(
                "groupResource {pattern:?}: a `}}` without its `{{`"
            ));
        }
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find('}')
        .map(|i| open + i)
        .ok_or_else(|| format!("groupResource {pattern:?}: a `{{` without its `}}`"))?;
    let inner = &pattern[open + 1..close];
    if inner.contains('{') {
        return Err(format!(
            "groupResource {pattern:?}: nested {{}} are not supported"
        ));
    }
    let mut out = Vec::new();
    for choice in inner.split(',') {
        let rest = format!("{}{choice}{}", &pattern[..open], &pattern[close + 1..]);
        out.extend(expand(&rest)?);
        if out.len() > MAX_ALTERNATIVES {
            return Err(format!(
                "groupResource {pattern:?} expands to more than {MAX_ALTERNATIVES} patterns"
            ));
        }
    }
    Ok(out)
}

fn tokens(pattern: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                Token::Any
            }
            '*' => Token::Part,
            '?' => Token::One,
            c => Token::Char(c),
        });
    }
    out
}

/// Matching by dynamic programming over (pattern position, text position): linear in the
/// product, never exponential.
fn matches(pattern: &[Token], text: &[char]) -> bool {
    // reachable[j]: the pattern consumed so far can match text[..j].
    let mut reachable = vec![false; text.len() + 1];
    reachable[0] = true;
    for token in pattern {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            if !reachable[j] {
                continue;
            }
            match token {
                Token::Char(c) => {
                    if text.get(j) == Some(c) {
                        next[j + 1] = true;
                    }
                }
                Token::One => {
                    if text.get(j).is_some_and(|t| *t != '.') {
                        next[j + 1] = true;
                    }
                }
                Token::Part => {
                    next[j] = true;
                    let mut k = j;
                    while k < text.len() && text[k] != '.' {
                        k += 1;
                        next[k] = true;
                    }
                }
                Token::Any => {
                    for slot in next.iter_mut().skip(j) {
                        *slot = true;
                    }
                }
            }
        }
        reachable = next;
    }
    reachable[text.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> GroupResourceGlob {
        GroupResourceGlob::new(p).expect("pattern")
    }

    #[test]
    fn velero_patterns() {
        assert!(glob("deployments.apps").matches("deployments.apps"));
        assert!(!glob("deployments.apps").matches("deployments.apps.example"));
        assert!(glob("*.apps").matches("statefulsets.apps"));
        assert!(
            !glob("*").matches("deployments.apps"),
            "* stays in one part"
        );
        assert!(glob("*").matches("persistentvolumeclaims"));
        assert!(glob("**").matches("widgets.example.com"));
        assert!(glob("*.*.com").matches("widgets.example.com"));
        assert!(glob("{pods,persistentvolumeclaims}").matches("persistentvolumeclaims"));
        assert!(!glob("{pods,services}").matches("secrets"));
        assert!(glob("po?s").matches("pods"));
        assert!(!glob("pod?").matches("pod."));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["[ab]", "{a,b", "a}", "{{a}}"] {
            assert!(GroupResourceGlob::new(bad).is_err(), "{bad}");
        }
        let many = "{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b}";
        assert!(GroupResourceGlob::new(many).is_err());
    }

    #[test]
    fn long_texts_match_in_polynomial_time() {
        let pattern = glob("*a*a*a*a*a*a*a*a*a*b");
        let text = "a".repeat(500);
        assert!(!pattern.matches(&text));
    }
}
