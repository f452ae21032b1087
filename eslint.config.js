// @ts-check
import eslint from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/", "artifacts/", "cache/", "types/", "coverage/", "deployments/", "client/dashboard/web/dist/"] },
  eslint.configs.recommended,
  ...tseslint.configs.strict,
  {
    languageOptions: {
      globals: { process: "readonly", console: "readonly", Buffer: "readonly", URL: "readonly" },
    },
    rules: {
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "@typescript-eslint/no-non-null-assertion": "off",
      "no-restricted-imports": [
        "error",
        { patterns: [{ group: ["**/node/**", "**/client/**"], message: "protocol/ must not import node/ or client/" }] },
      ],
    },
  },
  {
    // node/ and client/ never import each other: shared code lives in protocol/.
    files: ["node/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: [{ group: ["**/client/**"], message: "node/ must not import client/" }] }] },
  },
  {
    files: ["client/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: [{ group: ["**/node/**"], message: "client/ must not import node/" }] }] },
  },
  {
    files: ["bin/**", "scripts/**", "test/**", "*.config.ts", "*.config.js"],
    rules: { "no-restricted-imports": "off" },
  },
);
