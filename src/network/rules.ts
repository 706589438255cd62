/** Rule semantics moved to `model.ts`; this re-export keeps older imports working. */
export { type NormalRule, normaliseRule, PROTOCOLS, type Rule, type RuleInput, ruleKey } from './model.js';
