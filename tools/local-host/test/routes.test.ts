import { describe, expect, it } from 'vitest';
import { compileRoute } from '../src/routes';

describe('route templates', () => {
  it('matches literals case-insensitively and captures decoded parameters', () => {
    const route = compileRoute('hubs/{hubName}/keys/{keyName}');
    expect(route.match('HUBS/hub-1/keys/my%20key')).toEqual({ hubName: 'hub-1', keyName: 'my key' });
    expect(route.match('hubs/hub-1/keys/k/')).toEqual({ hubName: 'hub-1', keyName: 'k' });
    expect(route.match('hubs/hub-1/keys')).toBeUndefined();
    expect(route.match('hubs/hub-1/keys/k/extra')).toBeUndefined();
  });

  it('supports optional and catch-all parameters and constraints', () => {
    expect(compileRoute('items/{id?}').match('items')).toEqual({ id: null });
    expect(compileRoute('items/{id?}').match('items/3')).toEqual({ id: '3' });
    expect(compileRoute('files/{*path}').match('files/a/b/c.txt')).toEqual({ path: 'a/b/c.txt' });
    expect(compileRoute('items/{id:int}').match('items/12')).toEqual({ id: '12' });
    expect(compileRoute('items/{id:int}').match('items/abc')).toBeUndefined();
    expect(compileRoute('files/{name}.{ext}').match('files/report.final.pdf')).toEqual({
      name: 'report.final',
      ext: 'pdf',
    });
  });

  it('ranks literal routes above parameterised ones and catch-alls last', () => {
    const [literal, parameter, catchAll] = ['items/special', 'items/{id}', '{*any}'].map(compileRoute);
    expect(literal!.precedence).toBeGreaterThan(parameter!.precedence);
    expect(parameter!.precedence).toBeGreaterThan(catchAll!.precedence);
  });

  it('rejects templates the host would reject, saying why', () => {
    expect(() => compileRoute('a/{*rest}/b')).toThrow('the catch-all {*rest} must be the last segment');
    expect(() => compileRoute('a/{id:regex(x)}')).toThrow('constraint ":regex(x)" is not supported');
    expect(() => compileRoute('a/{id}/{ID}')).toThrow('a parameter name is used twice');
    expect(() => compileRoute('a/{id')).toThrow('has an unclosed "{"');
  });
});
