// Every string the guard sees, in Chinese (the default) and English. The choice is kept in localStorage.
// Keys are grouped by screen; decision reasons, event types, alarm kinds, door states and modes mirror the
// gateway's enums (edge/decision.py Reason, edge/events.py, edge/model.py) so that a code the gateway sends
// is shown in the guard's language, with the English text from the server as the fallback.

const STORAGE_KEY = "menwei.console.lang";
export const LANGUAGES = ["zh-CN", "en"];

const zh = {
  "app.title": "门卫控制台",
  "lang.switch": "English",
  "lang.name": "中文",

  "auth.tab_login": "登录",
  "auth.tab_setup": "首次设置",
  "auth.username": "用户名",
  "auth.password": "密码",
  "auth.password2": "再次输入密码",
  "auth.login": "登录",
  "auth.wrong": "用户名或密码错误",
  "auth.locked": "失败次数过多，请稍后再试",
  "auth.setup_title": "创建第一个管理员",
  "auth.setup_hint": "在网关日志中找到一次性设置码（\"one-time setup code\"），创建管理员账号。",
  "auth.code": "一次性设置码",
  "auth.setup": "创建管理员并登录",
  "auth.mismatch": "两次输入的密码不一致",
  "auth.setup_done": "系统已设置过，请直接登录",
  "auth.wrong_code": "设置码错误",
  "auth.offline_note": "控制台直接连接网关，断网时仍可使用。",

  "role.guard": "保安",
  "role.admin": "管理员",
  "top.logout": "退出",
  "top.gateway": "网关 {id}",
  "sync.ok": "云端已连接",
  "sync.down": "云端离线",
  "sync.none": "未接云端",
  "sync.unknown": "云端状态未知",
  "sync.backlog": "{n} 条待上传",
  "devices.ok": "设备全部在线",
  "devices.some": "{n} 台设备离线",
  "clock.untrusted": "时钟未校准",
  "site.lockdown_banner": "全区封锁中 — 除应急人员外一律禁止通行",

  "doors.title": "门禁",
  "door.open_once": "开门一次",
  "door.online": "控制器在线",
  "door.offline": "控制器离线",
  "door.state.locked": "已锁",
  "door.state.unlocked": "已开锁",
  "door.state.open": "门已开",
  "door.state.forced": "强行开门",
  "door.state.held": "开门超时",
  "door.state.unknown": "未知",
  "mode.normal": "正常",
  "mode.locked": "常闭",
  "mode.unlocked": "常开",
  "mode.lockdown": "封锁",
  "door.opened": "{door} 已开门",

  "site.lockdown": "全区封锁",
  "site.normal": "恢复正常",
  "site.lockdown_title": "全区封锁",
  "site.lockdown_text": "所有门将立即锁闭，只有应急人员可以通行。",
  "site.normal_title": "解除封锁",
  "site.normal_text": "所有门恢复正常模式。",
  "site.done_lockdown": "已封锁全区",
  "site.done_normal": "已恢复正常",

  "dlg.reason": "原因（必填）",
  "dlg.reason_placeholder": "例如：快递员送件",
  "dlg.reason_required": "请填写原因",
  "dlg.confirm": "确认",
  "dlg.cancel": "取消",
  "dlg.open_title": "开门一次：{door}",
  "dlg.open_text": "门会打开一次，原因记入审计日志。",
  "dlg.note": "处理情况（可选）",
  "dlg.ack_title": "确认报警",
  "quick.delivery": "快递/外卖",
  "quick.visitor": "访客",
  "quick.resident": "住户忘带卡",
  "quick.maintenance": "维修",
  "quick.emergency": "紧急情况",

  "feed.title": "实时通行记录",
  "feed.live": "实时",
  "feed.reconnecting": "重新连接中…",
  "feed.empty": "暂无记录",
  "feed.granted": "通过",
  "feed.denied": "拒绝",
  "feed.by": "操作人 {by}",
  "feed.unknown_door": "",
  "feed.face": "人脸抓拍",
  "feed.all": "显示全部",
  "feed.all_hint": "包括登录、门状态等记录",

  "alarms.title": "报警",
  "alarms.none": "没有未处理的报警",
  "alarms.ack": "确认",
  "alarms.count": "{n} 条未处理报警",
  "alarms.acked": "报警已确认",

  "pass.title": "访客码核验",
  "pass.scan": "扫描访客二维码，或输入后按回车",
  "pass.check": "核验",
  "pass.valid": "有效",
  "pass.invalid": "无效",
  "pass.visitor": "访客",
  "pass.host": "被访单元",
  "pass.validity": "有效期",
  "pass.uses_left": "剩余次数",
  "pass.unlimited": "不限",
  "pass.doors": "可通行",
  "pass.id": "通行证",
  "pass.admit": "放行至：",
  "pass.admitted": "已放行：{door}",
  "pass.admit_refused": "未放行：{reason}",
  "pass.idle": "等待扫码…",

  "visitor.title": "访客登记",
  "visitor.name": "访客称呼",
  "visitor.name_placeholder": "例如：李女士、快递员",
  "visitor.host": "被访单元",
  "visitor.host_placeholder": "例如：A-1201",
  "visitor.doors": "可通行的门",
  "visitor.hours": "有效时长（小时）",
  "visitor.uses": "可用次数",
  "visitor.note": "备注",
  "visitor.submit": "生成访客码",
  "visitor.print": "打印",
  "visitor.again": "再登记一位",
  "visitor.issued": "访客码已生成",
  "visitor.pass_heading": "访客通行证",
  "visitor.not_configured": "本网关未开启访客登记",
  "visitor.default_doors": "不选则用默认的门",

  "lookup.title": "查询",
  "lookup.placeholder": "姓名、单元或卡号后几位",
  "lookup.search": "查询",
  "lookup.people": "人员",
  "lookup.passes": "访客码",
  "lookup.none": "没有找到",
  "lookup.face": "已录入人脸",
  "lookup.revoked": "已作废",
  "lookup.uses": "已用 {n} 次",
  "lookup.until": "至 {t}",
  "kind.resident": "住户",
  "kind.staff": "员工",
  "kind.contractor": "外包人员",
  "kind.visitor": "访客",

  "health.title": "系统状态",
  "health.gateway": "网关",
  "health.version": "版本",
  "health.uptime": "运行时间",
  "health.access_list": "名单版本",
  "health.people": "人员数",
  "health.sync": "云同步",
  "health.outbox": "待上传事件",
  "health.oldest": "最早未上传",
  "health.downlink": "最近下发",
  "health.clock": "时钟",
  "health.clock_ok": "已校准",
  "health.devices": "设备",
  "health.online": "在线",
  "health.offline": "离线",
  "health.yes": "是",
  "health.no": "否",
  "devkind.controller": "门控制器",
  "devkind.reader": "读卡器",
  "devkind.camera": "摄像头",
  "devkind.face": "人脸摄像头",
  "devkind.scanner": "扫码器",

  "tab.visitor": "访客登记",
  "tab.lookup": "查询",
  "tab.health": "系统状态",

  "panel.unavailable": "此功能在本网关上不可用",
  "err.network": "无法连接网关",
  "err.forbidden": "没有权限",
  "err.generic": "操作失败：{detail}",
  "err.session": "登录已过期，请重新登录",

  "dur.s": "{n} 秒",
  "dur.m": "{n} 分钟",
  "dur.h": "{h} 小时 {m} 分",
  "dur.d": "{d} 天 {h} 小时",

  "cred.card": "卡",
  "cred.pin": "密码",
  "cred.ble": "手机钥匙",
  "cred.face": "人脸",
  "cred.pass": "访客码",

  "event.decision": "通行",
  "event.alarm": "报警",
  "event.door_state": "门状态",
  "event.mode": "模式变更",
  "event.exit_request": "出门按钮",
  "event.remote_open": "远程开门",
  "event.command": "云端指令",
  "event.sync_error": "同步错误",
  "event.access_list": "名单更新",
  "event.console": "控制台操作",
  "event.pass_use": "访客码使用",
  "event.walkin_registered": "访客登记",
  "event.alarm_ack": "报警确认",

  "alarm.door_forced": "强行开门",
  "alarm.door_held": "门长时间未关",
  "alarm.tamper": "设备被拆",
  "alarm.device_offline": "设备离线",
  "alarm.outbox_overflow": "待上传事件过多",
  "alarm.fire_alarm": "火警",
  "alarm.face_unknown": "陌生人逗留",
  "alarm.face_spoof": "疑似假脸",
  "alarm.store_restored": "数据库已恢复",
  "alarm.cleared": "已解除",

  "action.login": "登录",
  "action.logout": "退出",
  "action.setup": "首次设置",
  "action.create_account": "创建账号",
  "action.forbidden": "越权操作被拒",
  "action.open_door": "开门",
  "action.ack_alarm": "确认报警",
  "action.check_pass": "核验访客码",
  "action.admit_pass": "凭访客码放行",
  "action.register_visitor": "访客登记",
  "action.view_snapshot": "查看抓拍",
  "action.ok": "成功",
  "action.refused": "被拒绝",

  "reason.granted": "允许通行",
  "reason.granted_responder": "应急人员放行",
  "reason.unknown_reader": "未知读卡器",
  "reason.unknown_credential": "未登记的凭证",
  "reason.credential_revoked": "凭证已注销",
  "reason.credential_disabled": "凭证已停用",
  "reason.credential_not_yet_valid": "凭证尚未生效",
  "reason.credential_expired": "凭证已过期",
  "reason.person_disabled": "人员已停用",
  "reason.person_not_yet_valid": "人员尚未生效",
  "reason.person_expired": "人员已过期",
  "reason.no_access_to_door": "无此门权限",
  "reason.outside_schedule": "不在允许时段",
  "reason.door_locked": "门处于常闭",
  "reason.lockdown": "全区封锁",
  "reason.anti_passback": "防潜回",
  "reason.pass_revoked": "访客码已作废",
  "reason.pass_not_yet_valid": "访客码尚未生效",
  "reason.pass_expired": "访客码已过期",
  "reason.pass_wrong_door": "访客码不能开此门",
  "reason.pass_used_up": "访客码次数已用完",
  "reason.pass_malformed": "不是有效的访客码",
  "reason.pass_unknown_key": "签发者不受信任",
  "reason.pass_bad_signature": "签名无效（伪造或被篡改）",
  "reason.pass_key_retired": "签发密钥已停用",
  "reason.pass_wrong_site": "不是本小区的访客码",
  "reason.clock_untrusted": "网关时钟未校准，暂不接受访客码",
  "reason.second_factor_required": "需要第二种凭证",
  "reason.malformed": "不是有效的访客码",
  "reason.unknown_key": "签发者不受信任",
  "reason.bad_signature": "签名无效（伪造或被篡改）",
  "reason.key_retired": "签发密钥已停用",
  "reason.wrong_site": "不是本小区的访客码",
};

const en = {
  "app.title": "Guard console",
  "lang.switch": "中文",
  "lang.name": "English",

  "auth.tab_login": "Log in",
  "auth.tab_setup": "First run",
  "auth.username": "User name",
  "auth.password": "Password",
  "auth.password2": "Password again",
  "auth.login": "Log in",
  "auth.wrong": "Wrong user name or password",
  "auth.locked": "Too many failed attempts: try again later",
  "auth.setup_title": "Create the first admin",
  "auth.setup_hint": "Find the one-time setup code in the gateway's log (\"one-time setup code\") and create the admin account.",
  "auth.code": "One-time setup code",
  "auth.setup": "Create admin and log in",
  "auth.mismatch": "The two passwords differ",
  "auth.setup_done": "Setup is done already: please log in",
  "auth.wrong_code": "Wrong setup code",
  "auth.offline_note": "The console talks to the gateway directly and works without the cloud.",

  "role.guard": "Guard",
  "role.admin": "Admin",
  "top.logout": "Log out",
  "top.gateway": "Gateway {id}",
  "sync.ok": "Cloud connected",
  "sync.down": "Cloud offline",
  "sync.none": "No cloud configured",
  "sync.unknown": "Cloud status unknown",
  "sync.backlog": "{n} to upload",
  "devices.ok": "All devices online",
  "devices.some": "{n} device(s) offline",
  "clock.untrusted": "Clock not trusted",
  "site.lockdown_banner": "SITE LOCKDOWN — only responders may pass",

  "doors.title": "Doors",
  "door.open_once": "Open once",
  "door.online": "Controller online",
  "door.offline": "Controller OFFLINE",
  "door.state.locked": "Locked",
  "door.state.unlocked": "Unlocked",
  "door.state.open": "Open",
  "door.state.forced": "FORCED OPEN",
  "door.state.held": "HELD OPEN",
  "door.state.unknown": "Unknown",
  "mode.normal": "Normal",
  "mode.locked": "Locked",
  "mode.unlocked": "Held unlocked",
  "mode.lockdown": "Lockdown",
  "door.opened": "{door} opened",

  "site.lockdown": "Lockdown",
  "site.normal": "Back to normal",
  "site.lockdown_title": "Lock down the site",
  "site.lockdown_text": "Every door locks at once; only responders can pass.",
  "site.normal_title": "End the lockdown",
  "site.normal_text": "Every door returns to its normal mode.",
  "site.done_lockdown": "The site is locked down",
  "site.done_normal": "Back to normal",

  "dlg.reason": "Reason (required)",
  "dlg.reason_placeholder": "e.g. courier delivering a parcel",
  "dlg.reason_required": "Please give a reason",
  "dlg.confirm": "Confirm",
  "dlg.cancel": "Cancel",
  "dlg.open_title": "Open once: {door}",
  "dlg.open_text": "The door opens once; the reason goes into the audit trail.",
  "dlg.note": "What you found or did (optional)",
  "dlg.ack_title": "Acknowledge alarm",
  "quick.delivery": "Delivery",
  "quick.visitor": "Visitor",
  "quick.resident": "Resident without card",
  "quick.maintenance": "Maintenance",
  "quick.emergency": "Emergency",

  "feed.title": "Live events",
  "feed.live": "Live",
  "feed.reconnecting": "Reconnecting…",
  "feed.empty": "Nothing yet",
  "feed.granted": "Granted",
  "feed.denied": "Denied",
  "feed.by": "by {by}",
  "feed.unknown_door": "",
  "feed.face": "Face snapshot",
  "feed.all": "Show all",
  "feed.all_hint": "including logins, door states and the like",

  "alarms.title": "Alarms",
  "alarms.none": "No open alarms",
  "alarms.ack": "Acknowledge",
  "alarms.count": "{n} open alarm(s)",
  "alarms.acked": "Alarm acknowledged",

  "pass.title": "Pass check",
  "pass.scan": "Scan a visitor pass (or type it, then Enter)",
  "pass.check": "Check",
  "pass.valid": "VALID",
  "pass.invalid": "INVALID",
  "pass.visitor": "Visitor",
  "pass.host": "Host unit",
  "pass.validity": "Valid",
  "pass.uses_left": "Uses left",
  "pass.unlimited": "Unlimited",
  "pass.doors": "Doors",
  "pass.id": "Pass",
  "pass.admit": "Admit at:",
  "pass.admitted": "Admitted: {door}",
  "pass.admit_refused": "Not admitted: {reason}",
  "pass.idle": "Waiting for a scan…",

  "visitor.title": "Walk-in visitor",
  "visitor.name": "Visitor",
  "visitor.name_placeholder": "e.g. Ms. Li, Courier",
  "visitor.host": "Host unit",
  "visitor.host_placeholder": "e.g. A-1201",
  "visitor.doors": "Doors",
  "visitor.hours": "Valid for (hours)",
  "visitor.uses": "Uses",
  "visitor.note": "Note",
  "visitor.submit": "Issue pass",
  "visitor.print": "Print",
  "visitor.again": "Next visitor",
  "visitor.issued": "Pass issued",
  "visitor.pass_heading": "Visitor pass",
  "visitor.not_configured": "Walk-in passes are not enabled on this gateway",
  "visitor.default_doors": "none ticked: the default doors",

  "lookup.title": "Look up",
  "lookup.placeholder": "Name, unit or last digits of a card",
  "lookup.search": "Search",
  "lookup.people": "People",
  "lookup.passes": "Passes",
  "lookup.none": "Nothing found",
  "lookup.face": "Face enrolled",
  "lookup.revoked": "Revoked",
  "lookup.uses": "used {n}×",
  "lookup.until": "until {t}",
  "kind.resident": "Resident",
  "kind.staff": "Staff",
  "kind.contractor": "Contractor",
  "kind.visitor": "Visitor",

  "health.title": "Health",
  "health.gateway": "Gateway",
  "health.version": "Version",
  "health.uptime": "Up for",
  "health.access_list": "Access list version",
  "health.people": "People",
  "health.sync": "Cloud sync",
  "health.outbox": "Events to upload",
  "health.oldest": "Oldest unsent",
  "health.downlink": "Last from cloud",
  "health.clock": "Clock",
  "health.clock_ok": "Trusted",
  "health.devices": "Devices",
  "health.online": "online",
  "health.offline": "OFFLINE",
  "health.yes": "yes",
  "health.no": "no",
  "devkind.controller": "door controller",
  "devkind.reader": "reader",
  "devkind.camera": "camera",
  "devkind.face": "face camera",
  "devkind.scanner": "scanner",

  "tab.visitor": "Walk-in",
  "tab.lookup": "Look up",
  "tab.health": "Health",

  "panel.unavailable": "Not available on this gateway",
  "err.network": "Cannot reach the gateway",
  "err.forbidden": "Not allowed",
  "err.generic": "Failed: {detail}",
  "err.session": "Session ended: please log in again",

  "dur.s": "{n} s",
  "dur.m": "{n} min",
  "dur.h": "{h} h {m} min",
  "dur.d": "{d} d {h} h",

  "cred.card": "Card",
  "cred.pin": "PIN",
  "cred.ble": "Phone key",
  "cred.face": "Face",
  "cred.pass": "Visitor pass",

  "event.decision": "Access",
  "event.alarm": "Alarm",
  "event.door_state": "Door",
  "event.mode": "Mode change",
  "event.exit_request": "Exit button",
  "event.remote_open": "Remote open",
  "event.command": "Cloud command",
  "event.sync_error": "Sync error",
  "event.access_list": "Access list update",
  "event.console": "Console",
  "event.pass_use": "Pass used",
  "event.walkin_registered": "Walk-in visitor",
  "event.alarm_ack": "Alarm acknowledged",

  "alarm.door_forced": "Door forced",
  "alarm.door_held": "Door held open",
  "alarm.tamper": "Tamper",
  "alarm.device_offline": "Device offline",
  "alarm.outbox_overflow": "Upload backlog full",
  "alarm.fire_alarm": "Fire alarm",
  "alarm.face_unknown": "Unknown person lingering",
  "alarm.face_spoof": "Possible fake face",
  "alarm.store_restored": "Database restored",
  "alarm.cleared": "cleared",

  "action.login": "log in",
  "action.logout": "log out",
  "action.setup": "first-run setup",
  "action.create_account": "create account",
  "action.forbidden": "refused (not allowed)",
  "action.open_door": "open door",
  "action.ack_alarm": "acknowledge alarm",
  "action.check_pass": "pass check",
  "action.admit_pass": "pass admitted",
  "action.register_visitor": "walk-in visitor",
  "action.view_snapshot": "face snapshot viewed",
  "action.ok": "ok",
  "action.refused": "refused",

  "reason.granted": "Granted",
  "reason.granted_responder": "Responder let through",
  "reason.unknown_reader": "Unknown reader",
  "reason.unknown_credential": "Unknown credential",
  "reason.credential_revoked": "Credential revoked",
  "reason.credential_disabled": "Credential disabled",
  "reason.credential_not_yet_valid": "Credential not valid yet",
  "reason.credential_expired": "Credential expired",
  "reason.person_disabled": "Person disabled",
  "reason.person_not_yet_valid": "Person not valid yet",
  "reason.person_expired": "Person expired",
  "reason.no_access_to_door": "No access to this door",
  "reason.outside_schedule": "Outside allowed hours",
  "reason.door_locked": "Door is locked",
  "reason.lockdown": "Site lockdown",
  "reason.anti_passback": "Anti-passback",
  "reason.pass_revoked": "Pass revoked",
  "reason.pass_not_yet_valid": "Pass not valid yet",
  "reason.pass_expired": "Pass expired",
  "reason.pass_wrong_door": "Pass not valid for this door",
  "reason.pass_used_up": "Pass used up",
  "reason.pass_malformed": "Not a valid pass",
  "reason.pass_unknown_key": "Issuer not trusted",
  "reason.pass_bad_signature": "Bad signature (forged or tampered)",
  "reason.pass_key_retired": "Issuing key retired",
  "reason.pass_wrong_site": "Pass for another site",
  "reason.clock_untrusted": "Gateway clock not trusted: passes refused for now",
  "reason.second_factor_required": "Second credential required",
  "reason.malformed": "Not a valid pass",
  "reason.unknown_key": "Issuer not trusted",
  "reason.bad_signature": "Bad signature (forged or tampered)",
  "reason.key_retired": "Issuing key retired",
  "reason.wrong_site": "Pass for another site",
};

const TABLES = { "zh-CN": zh, en };

function stored() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

let current = LANGUAGES.includes(stored()) ? stored() : "zh-CN";
const listeners = new Set();

export function lang() {
  return current;
}

export function setLang(next) {
  if (!LANGUAGES.includes(next) || next === current) return;
  current = next;
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    // a private window may refuse storage: the switch still works for this page
  }
  document.documentElement.lang = next;
  applyStatic(document);
  for (const fn of listeners) fn(next);
}

export function toggleLang() {
  setLang(current === "zh-CN" ? "en" : "zh-CN");
}

export function onLangChange(fn) {
  listeners.add(fn);
}

export function has(key) {
  return key in TABLES[current];
}

// t("door.opened", {door: "Main gate"}); a missing key shows the fallback, else the key itself.
export function t(key, vars = {}, fallback = undefined) {
  const text = TABLES[current][key] ?? TABLES.en[key] ?? fallback ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

// A code from the gateway (a reason, an alarm kind, an event type): localized if known, else `fallback`
// (e.g. the server's English text), else the code.
export function code(prefix, value, fallback = undefined) {
  if (value === null || value === undefined || value === "") return fallback ?? "";
  return t(`${prefix}.${value}`, {}, fallback ?? value);
}

// Elements written in index.html carry data-i18n (text), data-i18n-placeholder, data-i18n-title.
export function applyStatic(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  document.title = `${t("app.title")} · menwei`;
}

// Keys every language must have (checked by the browser test): the tables must not drift apart.
export function missingKeys() {
  const out = [];
  for (const [name, table] of Object.entries(TABLES)) {
    for (const key of Object.keys(zh)) if (!(key in table)) out.push(`${name}:${key}`);
    for (const key of Object.keys(en)) if (!(key in zh)) out.push(`zh-CN:${key}`);
  }
  return out;
}

document.documentElement.lang = current;
