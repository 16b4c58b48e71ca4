// @ts-check
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.data/**', 'coverage/**', '.cache/**', '.stryker-tmp/**', 'reports/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['*.mjs', 'scripts/*.mjs'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      'no-console': 'off',
    },
  },
  {
    files: ['functions/**/*.ts', 'src/**/*.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: "ImportDeclaration[source.value='zod'] > ImportSpecifier",
          message:
            "Write `import * as z from 'zod'`: a named import keeps all of zod (every locale) in the bundle, which each cold start parses.",
        },
      ],
    },
  },
  {
    files: ['src/domain/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['@azure/*'], message: 'The domain stays free of Azure SDKs: use a port.' },
            {
              group: ['**/application/**', '**/application', '**/adapters/**', '**/hosting/**', '**/config'],
              message: 'The domain depends on nothing outside it: decisions only, effects go through ports.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/application/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['@azure/*'], message: 'Use cases reach Azure through the ports only.' },
            {
              group: ['**/adapters/**', '**/hosting/**', '**/config'],
              message: 'Use cases depend on the domain and its ports, never on adapters or hosting.',
            },
          ],
        },
      ],
    },
  },
  {
    // The dashboard runs in the browser: it may share the API's types, never the server's code.
    files: ['src/dashboard/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@azure/*', '../*', '!./*'],
              allowTypeImports: true,
              message: 'The page runs in a browser: import types from the app, and code from src/dashboard only.',
            },
          ],
        },
      ],
    },
  },
  {
    // Tests read JSON answers field by field; typing every response would add noise, not safety.
    files: ['test/**/*.ts', 'tools/*/test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
  {
    files: ['**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { globals: { console: 'readonly', process: 'readonly', Buffer: 'readonly', URL: 'readonly' } },
  },
  prettier,
);
