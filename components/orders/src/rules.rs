//! The orders component's rules as plain functions: what a new order must
//! look like and what it costs, what an idempotency key is, and who may
//! move an order to which status.

use app_common::http::error::Detail;
use app_common::http::validate::Problems;
use app_common::{ApiError, Principal};
use orders_model::OrderStatus;
use orders_model::currency;
use orders_model::store::{Order, OrderLine, ShippingAddress};
use serde::{Deserialize, Serialize};
use serde_json::Number;

pub const MAX_ITEMS: usize = 100;
pub const MAX_QUANTITY: i64 = 1000;
/// Largest unit price, in minor units (10 billion major units at two
/// decimals). With at most 100 lines of 1000 each, no total can overflow.
pub const MAX_UNIT_PRICE: i64 = 1_000_000_000_000;
pub const MAX_PRODUCT_ID_CHARS: usize = 100;
pub const MAX_ADDRESS_FIELD_CHARS: usize = 200;
pub const MAX_ZIP_CODE_CHARS: usize = 20;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// `POST /api/orders` body. Numbers are taken as JSON numbers and checked
/// here, so a fractional price gets a rule message, not a type error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateOrderBody {
    pub items: Vec<ItemBody>,
    pub shipping_address: AddressBody,
    pub currency: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ItemBody {
    pub product_id: String,
    pub quantity: Number,
    pub unit_price: Number,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddressBody {
    pub street: String,
    pub city: String,
    pub state: String,
    pub zip_code: String,
    pub country: String,
}

/// A validated order, before it has an id and an owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrder {
    pub lines: Vec<OrderLine>,
    pub total: i64,
    pub currency: String,
    pub shipping_address: ShippingAddress,
}

impl NewOrder {
    /// A digest of everything the client asked for: the same key with a
    /// different order is a reuse, not a replay.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("a new order always serialises");
        app_common::util::ids::sha256_hex(&canonical)
    }
}

/// Checks a body, reporting every problem at once, and computes the line
/// totals and the total in integer minor units.
pub fn validate_create(body: &CreateOrderBody) -> Result<NewOrder, ApiError> {
    let mut problems = Problems::new();
    if body.items.is_empty() || body.items.len() > MAX_ITEMS {
        problems.add(
            "items",
            "item_count",
            format!(
                "must contain 1 to {MAX_ITEMS} items, got {}",
                body.items.len()
            ),
        );
    }
    let mut lines = Vec::new();
    for (i, item) in body.items.iter().take(MAX_ITEMS).enumerate() {
        let field = |name: &str| format!("items[{i}].{name}");
        let product_id = item.product_id.trim().to_string();
        let chars = product_id.chars().count();
        if chars == 0 || chars > MAX_PRODUCT_ID_CHARS {
            problems.add(
                &field("productId"),
                "invalid_length",
                format!("must be 1 to {MAX_PRODUCT_ID_CHARS} characters"),
            );
        } else if product_id.chars().any(char::is_control) {
            problems.add(
                &field("productId"),
                "control_characters",
                "must not contain control characters",
            );
        }
        let quantity = whole_number(&item.quantity).filter(|q| (1..=MAX_QUANTITY).contains(q));
        if quantity.is_none() {
            problems.add(
                &field("quantity"),
                "out_of_range",
                format!("must be a whole number from 1 to {MAX_QUANTITY}"),
            );
        }
        let unit_price =
            whole_number(&item.unit_price).filter(|p| (0..=MAX_UNIT_PRICE).contains(p));
        if unit_price.is_none() {
            problems.add(
                &field("unitPrice"),
                "invalid_amount",
                format!(
                    "must be a whole number of minor units (cents) from 0 to {MAX_UNIT_PRICE}, \
                     e.g. 1999 for 19.99"
                ),
            );
        }
        if let (Some(quantity), Some(unit_price)) = (quantity, unit_price) {
            lines.push(OrderLine {
                product_id,
                quantity,
                unit_price,
                // Bounded above: at most 1000 * 10^12.
                line_total: quantity * unit_price,
            });
        }
    }
    let currency = body.currency.trim().to_ascii_uppercase();
    if !currency::is_known(&currency) {
        problems.add(
            "currency",
            "invalid_currency",
            "must be an ISO 4217 currency code such as USD or EUR",
        );
    }
    let a = &body.shipping_address;
    let mut address_field = |name: &str, raw: &str, max: usize| {
        let value = raw.trim().to_string();
        let chars = value.chars().count();
        let field = format!("shippingAddress.{name}");
        if chars == 0 || chars > max {
            problems.add(
                &field,
                "invalid_length",
                format!("must be 1 to {max} characters"),
            );
        } else if value.chars().any(char::is_control) {
            problems.add(
                &field,
                "control_characters",
                "must not contain control characters",
            );
        }
        value
    };
    let shipping_address = ShippingAddress {
        street: address_field("street", &a.street, MAX_ADDRESS_FIELD_CHARS),
        city: address_field("city", &a.city, MAX_ADDRESS_FIELD_CHARS),
        state: address_field("state", &a.state, MAX_ADDRESS_FIELD_CHARS),
        zip_code: address_field("zipCode", &a.zip_code, MAX_ZIP_CODE_CHARS),
        country: address_field("country", &a.country, MAX_ADDRESS_FIELD_CHARS),
    };
    problems.into_result()?;
    let total = lines
        .iter()
        .try_fold(0i64, |sum, l| sum.checked_add(l.line_total))
        .ok_or_else(|| {
            ApiError::validation(vec![Detail::field(
                "items",
                "total_too_large",
                "the order total is too large",
            )])
        })?;
    Ok(NewOrder {
        lines,
        total,
        currency,
        shipping_address,
    })
}

/// An integer JSON number (`10`, not `10.0` or `0.1`).
/// A JSON number with no fractional part, however it is spelled (`3`,
/// `3.0`, `3e0`: JSON, like the JSON Schema `integer` type of
/// docs/openapi.yaml, does not tell them apart). Beyond 2^53 a spelling
/// with a fraction or exponent is not exact, so it is refused.
fn whole_number(n: &Number) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= EXACT)
            .map(|f| f as i64)
    })
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
pub fn idempotency_key(header: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(raw) = header else {
        return Ok(None);
    };
    let key = raw.trim();
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::validation(vec![Detail::field(
            "Idempotency-Key",
            "invalid_idempotency_key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        )]));
    }
    Ok(Some(key.to_string()))
}

/// Whether `caller` may see `order`: its owner or an admin. Others get the
/// same 404 as for a missing order, so ids of other users' orders leak
/// nothing.
pub fn may_see(caller: &Principal, order: &Order) -> bool {
    caller.is_admin() || order.is_owned_by(&caller.user_id)
}

/// `PATCH /api/orders/:id/status` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    pub status: String,
}

pub fn parse_status(field: &str, text: &str) -> Result<OrderStatus, ApiError> {
    OrderStatus::parse(text).ok_or_else(|| {
        ApiError::validation(vec![Detail::field(
            field,
            "invalid_status",
            format!("must be one of: {}", OrderStatus::list(&OrderStatus::ALL)),
        )])
    })
}

/// Checks that `caller` (who may see the order) may move it from `from` to
/// `to`: admins make every allowed transition, owners may only cancel
/// (403 for anything else); a transition the lifecycle does not allow is a
/// 409.
pub fn check_transition(
    caller: &Principal,
    from: OrderStatus,
    to: OrderStatus,
) -> Result<(), ApiError> {
    if !caller.is_admin() && to != OrderStatus::Cancelled {
        return Err(ApiError::forbidden(
            "owners may only cancel their orders; other changes are made by administrators",
        ));
    }
    if !from.can_become(to) {
        let next = from.next();
        let allowed = if next.is_empty() {
            "none (it is final)".to_string()
        } else {
            OrderStatus::list(&next)
        };
        return Err(ApiError::conflict(format!(
            "an order that is {from} cannot become {to}; allowed next: {allowed}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use app_common::Role;
    use serde_json::json;

    fn body(value: serde_json::Value) -> CreateOrderBody {
        serde_json::from_value(value).unwrap()
    }

    fn address() -> serde_json::Value {
        json!({"street": "1 Main St", "city": "Springfield", "state": "IL",
               "zipCode": "62701", "country": "US"})
    }

    fn order(items: serde_json::Value, currency: &str) -> Result<NewOrder, ApiError> {
        validate_create(&body(
            json!({"items": items, "shippingAddress": address(), "currency": currency}),
        ))
    }

    #[test]
    fn totals_are_exact_integer_sums() {
        let o = order(
            json!([
                {"productId": "a", "quantity": 1, "unitPrice": 10},
                {"productId": "b", "quantity": 1, "unitPrice": 20},
                {"productId": "c", "quantity": 3, "unitPrice": 333}
            ]),
            "usd",
        )
        .unwrap();
        assert_eq!(o.total, 1029);
        assert_eq!(o.lines[2].line_total, 999);
        assert_eq!(o.currency, "USD");
        let max = order(
            json!(
                (0..100)
                    .map(|i| json!({"productId": format!("p{i}"), "quantity": 1000,
                                "unitPrice": MAX_UNIT_PRICE}))
                    .collect::<Vec<_>>()
            ),
            "EUR",
        )
        .unwrap();
        assert_eq!(max.total, 100 * 1000 * MAX_UNIT_PRICE);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = order(
            json!([
                {"productId": " ", "quantity": 0, "unitPrice": 0.1},
                {"productId": "b", "quantity": 1001, "unitPrice": -1},
                {"productId": "c", "quantity": 1.5, "unitPrice": 1e3}
            ]),
            "EURO",
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
        let fields = fields(&e);
        assert_eq!(
            fields,
            [
                "items[0].productId",
                "items[0].quantity",
                "items[0].unitPrice",
                "items[1].quantity",
                "items[1].unitPrice",
                "items[2].quantity",
                "currency"
            ]
        );
    }

    #[test]
    fn item_counts_are_bounded() {
        let item = json!({"productId": "a", "quantity": 1, "unitPrice": 1});
        assert!(order(json!(vec![item.clone(); 100]), "USD").is_ok());
        let e = order(json!(vec![item; 101]), "USD").unwrap_err();
        assert_eq!(e.details.len(), 1, "{:?}", e.details);
        assert_eq!(e.details[0].field.as_deref(), Some("items"));
        assert!(order(json!([]), "USD").is_err());
    }

    #[test]
    fn addresses_are_trimmed_and_required() {
        let mut a = address();
        a["zipCode"] = json!("123456789012345678901");
        a["city"] = json!("  Springfield  ");
        a["street"] = json!("");
        let e = validate_create(&body(json!({
            "items": [{"productId": "a", "quantity": 1, "unitPrice": 1}],
            "shippingAddress": a, "currency": "USD"
        })))
        .unwrap_err();
        let fields = fields(&e);
        assert_eq!(
            fields,
            ["shippingAddress.street", "shippingAddress.zipCode"]
        );
        assert!(
            serde_json::from_value::<CreateOrderBody>(json!({
                "items": [], "shippingAddress": address(), "currency": "USD", "discount": 5
            }))
            .is_err()
        );
    }

    #[test]
    fn fingerprints_tell_orders_apart() {
        let a = order(
            json!([{"productId": "a", "quantity": 1, "unitPrice": 1}]),
            "USD",
        )
        .unwrap();
        let b = order(
            json!([{"productId": "a", "quantity": 2, "unitPrice": 1}]),
            "USD",
        )
        .unwrap();
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert_eq!(idempotency_key(None).unwrap(), None);
        assert_eq!(
            idempotency_key(Some(" k-1 ")).unwrap().as_deref(),
            Some("k-1")
        );
        for bad in ["", "a b", "ключ", &"k".repeat(256)] {
            assert_eq!(idempotency_key(Some(bad)).unwrap_err().status, 400, "{bad}");
        }
    }

    fn fields(e: &ApiError) -> Vec<&str> {
        e.details
            .iter()
            .map(|d| d.field.as_deref().unwrap())
            .collect()
    }

    fn caller(role: Role) -> Principal {
        Principal {
            user_id: "u1".into(),
            role,
            token_id: "t".into(),
            expires_at: 0,
        }
    }

    #[test]
    fn owners_may_only_cancel_and_admins_follow_the_lifecycle() {
        use OrderStatus::*;
        let owner = caller(Role::User);
        let admin = caller(Role::Admin);
        assert!(check_transition(&owner, Created, Cancelled).is_ok());
        assert!(check_transition(&owner, Paid, Cancelled).is_ok());
        assert_eq!(
            check_transition(&owner, Shipped, Cancelled)
                .unwrap_err()
                .status,
            409
        );
        for to in [Paid, Shipped, Delivered, Created] {
            assert_eq!(
                check_transition(&owner, Created, to).unwrap_err().status,
                403
            );
        }
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                let r = check_transition(&admin, from, to);
                assert_eq!(r.is_ok(), from.can_become(to), "{from} -> {to}");
                if let Err(e) = r {
                    assert_eq!(e.status, 409);
                }
            }
        }
        let e = check_transition(&admin, Delivered, Paid).unwrap_err();
        assert!(e.message.contains("final"), "{}", e.message);
    }

    #[test]
    fn statuses_parse_strictly() {
        assert_eq!(parse_status("status", "paid").unwrap(), OrderStatus::Paid);
        assert_eq!(parse_status("status", "PAID").unwrap_err().status, 400);
    }
}
