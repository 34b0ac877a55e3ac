//! typify's output made final: formatted with prettyplease, and optional
//! arrays and maps made `Option`s (typify would drop an empty one).

use super::CodegenError;

/// Formats the whole file the way rustfmt would lay out items.
pub(super) fn format_code(code: &str) -> Result<String, CodegenError> {
    let file: syn::File = syn::parse_str(code).map_err(|e| CodegenError::Parse {
        contract: "(all)".to_owned(),
        message: e.to_string(),
    })?;
    let header: String = code
        .lines()
        .take_while(|l| l.starts_with("//"))
        .map(|l| format!("{l}\n"))
        .collect();
    Ok(format!("{header}\n{}", prettyplease::unparse(&file)))
}

/// Typify gives an optional array or map property the empty collection
/// as its default and skips it when empty, so `"tags": {}` would vanish on
/// the way through. Rewrites those fields (in typify's token text) to
/// `Option<collection>`, which keeps "absent" and "empty" apart.
pub(super) fn optional_collections(code: &str) -> String {
    const MARK: &str = "skip_serializing_if = \"";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        let after = &rest[at + MARK.len()..];
        let Some(end) = after.find('"') else { break };
        let path = &after[..end];
        if !path.ends_with("::is_empty") {
            out.push_str(&rest[..at + MARK.len() + end + 1]);
            rest = &after[end + 1..];
            continue;
        }
        out.push_str(&rest[..at]);
        out.push_str(MARK);
        out.push_str(":: std :: option :: Option::is_none\"");
        rest = &after[end + 1..];
        // The field follows the attribute: `)] pub name : TYPE ,`.
        let Some(colon) = rest.find(" : ") else { break };
        out.push_str(&rest[..colon + 3]);
        rest = &rest[colon + 3..];
        let mut depth = 0i32;
        let mut ty_end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '<' | '(' | '[' => depth += 1,
                '>' | ')' | ']' => depth -= 1,
                ',' | '}' if depth == 0 => {
                    ty_end = i;
                    break;
                }
                _ => {}
            }
        }
        out.push_str(":: std :: option :: Option < ");
        out.push_str(rest[..ty_end].trim_end());
        out.push_str(" > ");
        rest = &rest[ty_end..];
    }
    out.push_str(rest);
    out
}
