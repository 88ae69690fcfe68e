"""Price rules: checking one, and the price it gives for the product's stock now (pure functions)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import msgspec

from core.channels.schemas import PriceRule
from core.errors import FieldError, ValidationFailed

__all__ = ["PriceInputs", "Priced", "check_rule", "compute_price", "rule_from_json", "rule_to_json"]

BP = 10_000


def _refuse(field: str, en: str, zh: str, code: str) -> ValidationFailed:
    return ValidationFailed(en, zh, code=code, errors=[FieldError(field=f"price_rule.{field}", message=en, code=code)])


def check_rule(rule: PriceRule, face_value: int) -> PriceRule:
    """Refuse a rule that cannot give a price: floor above ceiling, a fixed rule without its price, a factor
    rule with no base (the product has no face value). Steps are kept sorted (nearest / largest first)."""
    if rule.floor_fen is not None and rule.ceiling_fen is not None and rule.floor_fen > rule.ceiling_fen:
        raise _refuse("floor_fen", f"The floor ({rule.floor_fen} fen) is above the ceiling ({rule.ceiling_fen} fen)",
                      f"最低价（{rule.floor_fen} 分）高于最高价（{rule.ceiling_fen} 分）", "floor_above_ceiling")
    if rule.kind == "fixed" and rule.price_fen is None:
        raise _refuse("price_fen", "A fixed price rule needs price_fen", "固定价格规则需要填写 price_fen",
                      "price_missing")
    if rule.kind == "factor" and rule.base_fen is None and face_value <= 0:
        raise _refuse("base_fen", "A factor rule needs base_fen (the product has no face value)",
                      "系数定价需要填写 base_fen（该商品没有面值）", "base_missing")
    if len({s.days for s in rule.expiry_steps}) != len(rule.expiry_steps):
        raise _refuse("expiry_steps", "Two expiry steps name the same number of days", "临期降价档位的天数重复",
                      "steps_repeat")
    if len({s.available for s in rule.pressure_steps}) != len(rule.pressure_steps):
        raise _refuse("pressure_steps", "Two stock pressure steps name the same stock",
                      "库存压力降价档位的库存数量重复", "steps_repeat")
    return msgspec.structs.replace(
        rule,
        expiry_steps=sorted(rule.expiry_steps, key=lambda s: s.days),
        pressure_steps=sorted(rule.pressure_steps, key=lambda s: -s.available),
    )


def rule_to_json(rule: PriceRule) -> dict[str, object]:
    data: dict[str, object] = msgspec.to_builtins(rule)
    return data


def rule_from_json(data: dict[str, object]) -> PriceRule:
    return msgspec.convert(data or {"kind": "fixed", "price_fen": 0}, PriceRule)


@dataclass(frozen=True)
class PriceInputs:
    """What a rule looks at: the product's face value, its available stock and first expiry."""

    face_value: int
    available: int
    first_expiry: dt.datetime | None
    now: dt.datetime


@dataclass(frozen=True)
class Priced:
    price_fen: int
    #: ``rule`` when only the base applies; ``expiry`` / ``pressure`` when such a step took something off.
    reason: str
    detail: str


def compute_price(rule: PriceRule, inputs: PriceInputs) -> Priced:
    """The price ``rule`` gives now, and why (the steps that apply)."""
    if rule.kind == "fixed":
        price = rule.price_fen or 0
        notes = [f"fixed {price}"]
    else:
        base = rule.base_fen if rule.base_fen is not None else inputs.face_value
        price = base * rule.factor_bp // BP
        notes = [f"{base}×{rule.factor_bp}bp"]
    reasons: list[str] = []
    if inputs.first_expiry is not None and rule.expiry_steps:
        days_left = (inputs.first_expiry - inputs.now).total_seconds() / 86_400
        step = next((s for s in rule.expiry_steps if days_left <= s.days), None)
        if step is not None and step.off_bp:
            price = price * (BP - step.off_bp) // BP
            reasons.append("expiry")
            notes.append(f"expiry≤{step.days}d -{step.off_bp}bp")
    pressure = next((s for s in rule.pressure_steps if inputs.available >= s.available), None)
    if pressure is not None and pressure.off_bp:
        price = price * (BP - pressure.off_bp) // BP
        reasons.append("pressure")
        notes.append(f"stock≥{pressure.available} -{pressure.off_bp}bp")
    if rule.floor_fen is not None and price < rule.floor_fen:
        price = rule.floor_fen
        notes.append(f"floor {rule.floor_fen}")
    if rule.ceiling_fen is not None and price > rule.ceiling_fen:
        price = rule.ceiling_fen
        notes.append(f"ceiling {rule.ceiling_fen}")
    return Priced(max(0, price), reasons[0] if len(reasons) == 1 else ("rule" if not reasons else "+".join(reasons)),
                  "; ".join(notes))
