// Store URIs and keys without any storage: root normalization, key ⇄ URI round trips with awkward characters,
// folder joins, and the temp-object marker that listings hide.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareKeys } from '../../store/backend.ts';
import { isTempKey, joinKey, keyUri, parseRootUri, resolveKey, tempMarker } from '../../store/uri.ts';

describe('store URIs', () => {
  it('normalizes roots: trailing slashes dropped, bucket and prefix split', () => {
    assert.deepEqual(parseRootUri('s3://bucket/runs/a/'), {
      scheme: 's3',
      uri: 's3://bucket/runs/a',
      bucket: 'bucket',
      prefix: 'runs/a',
    });
    assert.deepEqual(parseRootUri('s3://bucket'), {
      scheme: 's3',
      uri: 's3://bucket',
      bucket: 'bucket',
      prefix: '',
    });
    assert.deepEqual(parseRootUri('s3://bucket/'), parseRootUri('s3://bucket'));
    assert.deepEqual(parseRootUri('file:///tmp/x/'), {
      scheme: 'file',
      uri: 'file:///tmp/x',
      path: '/tmp/x',
    });
    assert.deepEqual(parseRootUri('file:///tmp/with%20space'), {
      scheme: 'file',
      uri: 'file:///tmp/with%20space',
      path: '/tmp/with space',
    });
  });

  it('round-trips keys with spaces, #, ?, % and non-ASCII through absolute URIs', () => {
    const keys = ['a b/c#d?e.bin', '100%/x', 'ü/日本語/😀.json', 'plain/key'];
    for (const rootUri of ['s3://bucket/runs', 's3://bucket', 'file:///tmp/store root']) {
      const root = parseRootUri(rootUri.replace(' ', '%20'));
      for (const key of keys) {
        const uri = keyUri(root, key);
        assert.ok(uri.startsWith(`${root.uri}/`), `${uri} under ${root.uri}`);
        assert.equal(resolveKey(root, uri), key, `${rootUri} ${key}`);
        assert.equal(resolveKey(root, key), key);
      }
    }
    assert.equal(
      keyUri(parseRootUri('s3://bucket/runs'), 'a b#c'),
      's3://bucket/runs/a b#c',
      'S3 URIs stay raw',
    );
  });

  it('refuses URIs of a sibling root that merely shares a name prefix', () => {
    assert.throws(() => resolveKey(parseRootUri('s3://bucket/runs'), 's3://bucket/runs2/x'), /not under/);
    assert.throws(() => resolveKey(parseRootUri('file:///tmp/root'), 'file:///tmp/root2/x'), /not under/);
    assert.throws(() => resolveKey(parseRootUri('file:///tmp/root'), 'file:///tmp/root'), /not under/);
  });

  it('joins folder parts into keys and recognizes temp objects', () => {
    assert.equal(joinKey('runs/a/', 'sha256', 'ff'), 'runs/a/sha256/ff');
    assert.equal(joinKey('', 'sha256', 'ff'), 'sha256/ff');
    assert.equal(isTempKey(`${tempMarker}abc`), true);
    assert.equal(isTempKey(`x/sha256/${tempMarker}abc`), true);
    assert.equal(isTempKey(`x/not${tempMarker}abc`), false);
  });

  it('orders keys as S3 does: by UTF-8 bytes', () => {
    const keys = ['a/b', 'a-c', '\u{1F600}', '\uFFFD', 'a'];
    assert.deepEqual([...keys].sort(compareKeys), ['a', 'a-c', 'a/b', '\uFFFD', '\u{1F600}']);
  });
});
