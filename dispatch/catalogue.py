"""The service catalogue: what the platform offers and who fulfils it.

The seed entries cover the families of the provincial home-care programme.
Prices are in cents of CNY; durations in minutes. Skills are the words the
solver matches against a caregiver's skills.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dispatch.domain import ProviderKind

__all__ = ["SEED_SERVICES", "Service", "ServiceFamily"]


class ServiceFamily(StrEnum):
    """Families of services, the unit of vendor demand reports."""

    CONSULTATION = "consultation"
    DAILY_LIFE = "daily_life"
    HEALTH = "health"
    EMERGENCY = "emergency"
    PHARMACY = "pharmacy"
    SUPERMARKET = "supermarket"
    HOUSEKEEPING = "housekeeping"
    HOME_ADAPTATION = "home_adaptation"
    PROACTIVE = "proactive"


@dataclass(frozen=True, slots=True)
class Service:
    """One entry of the catalogue.

    Attributes:
        service_code: Stable code used in orders and the API.
        family: The family the service belongs to.
        name_zh: Chinese name shown in the console.
        name_en: English name.
        skills: Skills a caregiver must hold, all of them.
        duration_min: Default time at the elder's home, in minutes.
        fulfilled_by: Caregiver visit or vendor order.
        price_cents: Default price, in cents of CNY.
        max_lateness_min: Lateness tolerated past the window, in minutes;
            0 makes the window hard.
    """

    service_code: str
    family: ServiceFamily
    name_zh: str
    name_en: str
    skills: frozenset[str]
    duration_min: int
    fulfilled_by: ProviderKind
    price_cents: int
    max_lateness_min: int = 0


def _svc(
    code: str,
    family: ServiceFamily,
    name_zh: str,
    name_en: str,
    skills: str,
    duration_min: int,
    price_cents: int,
    *,
    vendor: bool = False,
    max_lateness_min: int = 0,
) -> Service:
    return Service(
        service_code=code,
        family=family,
        name_zh=name_zh,
        name_en=name_en,
        skills=frozenset(skills.split()),
        duration_min=duration_min,
        fulfilled_by=ProviderKind.VENDOR if vendor else ProviderKind.CAREGIVER,
        price_cents=price_cents,
        max_lateness_min=max_lateness_min,
    )


F = ServiceFamily

SEED_SERVICES: tuple[Service, ...] = (
    _svc("consult_phone", F.CONSULTATION, "电话咨询", "Phone consultation", "", 20, 0),
    _svc(
        "consult_home",
        F.CONSULTATION,
        "上门咨询",
        "Home consultation",
        "care",
        45,
        3000,
    ),
    _svc(
        "meal_help",
        F.DAILY_LIFE,
        "助餐",
        "Meal help",
        "care",
        45,
        2500,
        max_lateness_min=15,
    ),
    _svc("bathing", F.DAILY_LIFE, "助浴", "Bathing", "care bathing", 60, 6000),
    _svc(
        "cleaning",
        F.DAILY_LIFE,
        "助洁",
        "Cleaning",
        "housework",
        90,
        5000,
        max_lateness_min=30,
    ),
    _svc(
        "companionship",
        F.DAILY_LIFE,
        "陪伴",
        "Companionship",
        "care",
        60,
        3000,
        max_lateness_min=30,
    ),
    _svc(
        "bp_glucose_check",
        F.HEALTH,
        "血压血糖检测",
        "Blood pressure and glucose check",
        "nursing",
        30,
        2000,
    ),
    _svc(
        "medication",
        F.HEALTH,
        "用药协助",
        "Medication help",
        "nursing medication",
        30,
        2500,
    ),
    _svc(
        "wound_care", F.HEALTH, "伤口护理", "Wound care", "nursing wound_care", 45, 5000
    ),
    _svc(
        "emergency_response",
        F.EMERGENCY,
        "紧急救助",
        "Emergency response",
        "first_aid",
        60,
        0,
    ),
    _svc(
        "pharmacy_delivery",
        F.PHARMACY,
        "送药上门",
        "Pharmacy delivery",
        "",
        30,
        800,
        vendor=True,
        max_lateness_min=30,
    ),
    _svc(
        "grocery_delivery",
        F.SUPERMARKET,
        "超市配送",
        "Supermarket delivery",
        "",
        30,
        600,
        vendor=True,
        max_lateness_min=30,
    ),
    _svc(
        "housekeeping",
        F.HOUSEKEEPING,
        "家政保洁",
        "Housekeeping",
        "",
        120,
        12000,
        vendor=True,
        max_lateness_min=60,
    ),
    _svc(
        "adaptation_assessment",
        F.HOME_ADAPTATION,
        "适老化评估",
        "Home-adaptation assessment",
        "",
        60,
        0,
        vendor=True,
    ),
    _svc(
        "adaptation_renovation",
        F.HOME_ADAPTATION,
        "适老化改造",
        "Home-adaptation renovation",
        "",
        240,
        150000,
        vendor=True,
    ),
    _svc(
        "proactive_visit",
        F.PROACTIVE,
        "主动探访",
        "Proactive care visit",
        "care",
        30,
        0,
        max_lateness_min=60,
    ),
)
