"use strict";
// Console texts: Chinese first, English on the switch.
const TEXTS = {
  zh: {},
  en: {
    title: "Home-care dispatch console", offline: "offline", live: "live", polling: "polling",
    map: "Live map", legend: "● caregivers (green: free, blue: busy) ■ orders (red: emergency, orange: urgent, grey: routine)",
    queues: "Queues", q_new: "New", q_offered: "Offered", q_late: "Late", q_escalated: "Escalated",
    intake: "Hotline intake", phone: "caller's phone", find: "Find elder", service: "Service",
    earliest: "Earliest", latest: "Latest", priority: "Priority", routine: "routine", urgent: "urgent",
    emergency: "emergency", notes: "Notes", book: "Book", order: "Order", status: "Status",
    provider: "Provider", timeline: "Timeline", explanation: "Why this provider",
    caregiver_id: "caregiver id (empty: back to dispatch)", reason: "reason", reassign: "Reassign",
    cancel: "Cancel order", record_ok: "service record checked", rating: "Rating",
    settlement: "Settlement (cents)", follow_up: "follow-up", close: "Close",
    booked_ok: "Booked", alert_emergency: "EMERGENCY", alert_escalated: "ESCALATED — act now",
    kpi_today: "Today", kpi_on_time: "On time", kpi_em_accept: "Emergency accept p50",
    none: "none yet", no_elder: "No elder with this phone", offered_by: "offered by",
    x_travel_added_min: "Added travel", x_skills_matched: "Skills matched", x_continuity: "Continuity of care",
    x_load: "Caregiver's load", x_lateness_min: "Lateness", x_candidates: "Candidates",
    x_reason: "Reason", x_chosen_by: "Chosen by", x_rejected: "Ruled out",
  },
};
const ZH_EXTRA = {
  live: "实时", polling: "轮询", booked_ok: "已下单", alert_emergency: "紧急求助",
  alert_escalated: "已升级，请立即处理", kpi_today: "今日订单", kpi_on_time: "准时率",
  kpi_em_accept: "紧急接单中位", none: "暂无", no_elder: "未找到该号码的老人", offered_by: "派单方",
  x_travel_added_min: "增加路程", x_skills_matched: "匹配技能", x_continuity: "服务连续性",
  x_load: "护理员负荷", x_lateness_min: "迟到", x_candidates: "候选人数", x_reason: "原因",
  x_chosen_by: "指定人", x_rejected: "排除",
};
let lang = sessionStorage.getItem("lang") || "zh";
function t(key) {
  if (lang === "en" && TEXTS.en[key]) return TEXTS.en[key];
  const el = document.querySelector(`[data-i18n="${key}"]`);
  return ZH_EXTRA[key] || (el && el.dataset.zh) || key;
}
function applyLang() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-i18n]")) {
    if (!el.dataset.zh) el.dataset.zh = el.textContent;
    el.textContent = lang === "en" ? TEXTS.en[el.dataset.i18n] || el.dataset.zh : el.dataset.zh;
  }
  for (const el of document.querySelectorAll("[data-i18n-ph]")) {
    if (!el.dataset.zhPh) el.dataset.zhPh = el.placeholder;
    el.placeholder = lang === "en" ? TEXTS.en[el.dataset.i18nPh] || el.dataset.zhPh : el.dataset.zhPh;
  }
  document.getElementById("lang").textContent = lang === "en" ? "中文" : "English";
}
