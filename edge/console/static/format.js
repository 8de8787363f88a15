// Times and durations as a guard reads them: local time of the booth, 24-hour clock.
import { lang, t } from "./i18n.js";

function parse(value) {
  if (value === null || value === undefined || value === "") return null;
  const date = value instanceof Date ? value : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

function locale() {
  return lang() === "zh-CN" ? "zh-CN" : "en-GB";
}

export function clock(value) {
  const date = parse(value);
  if (!date) return "";
  return date.toLocaleTimeString(locale(), { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

export function dateTime(value) {
  const date = parse(value);
  if (!date) return "—";
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString(locale(), { hour: "2-digit", minute: "2-digit", hour12: false });
  if (sameDay) return time;
  return `${date.toLocaleDateString(locale(), { month: "2-digit", day: "2-digit" })} ${time}`;
}

export function range(from, until) {
  if (!parse(from) && !parse(until)) return "";
  return `${dateTime(from)} – ${dateTime(until)}`;
}

// With the date always: for a printed pass, read on another day.
export function fullDateTime(value) {
  const date = parse(value);
  if (!date) return "—";
  return date.toLocaleString(locale(), {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
  });
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return t("dur.s", { n: s });
  if (s < 3600) return t("dur.m", { n: Math.floor(s / 60) });
  if (s < 86400) return t("dur.h", { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
  return t("dur.d", { d: Math.floor(s / 86400), h: Math.floor((s % 86400) / 3600) });
}

// An alarm's detail without the snapshot's file name (the page shows the picture itself).
export function withoutSnapshot(detail) {
  return (detail ?? "").replace(/;?\s*snapshot \S+ kept on the gateway/, "").trim();
}
