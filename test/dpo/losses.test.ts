// Preference losses against a plain-JS transcription of the reference sheet's formulas (float64), their
// gradients against finite differences, and stability at extreme margins.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chosenNll, type PreferenceLossType, preferenceLoss } from '../../engine/dpo/losses.ts';
import { hostTensor } from '../../engine/dtype.ts';
import { Graph } from '../../engine/graph.ts';
import { serializeModel } from '../../engine/onnx.ts';
import { gradcheck, runGraph } from '../engine/gradcheck-helpers.ts';

const logSigmoid = (z: number) => -(Math.max(-z, 0) + Math.log1p(Math.exp(-Math.abs(z))));
const settings = { beta: 0.3, labelSmoothing: 0.1, simpoGamma: 0.5 };

/** The reference sheet's per-pair formulas, h = (π_w − ref_w) − (π_l − ref_l). */
function expected(type: PreferenceLossType, [pw, pl, rw, rl, nw, nl]: number[], smoothing: number): number {
  const { beta, simpoGamma } = settings;
  const h = pw - rw - (pl - rl);
  switch (type) {
    case 'sigmoid':
      return -(1 - smoothing) * logSigmoid(beta * h) - smoothing * logSigmoid(-beta * h);
    case 'robust':
      return (
        (-(1 - smoothing) * logSigmoid(beta * h) + smoothing * logSigmoid(-beta * h)) / (1 - 2 * smoothing)
      );
    case 'hinge':
      return Math.max(0, 1 - beta * h);
    case 'ipo':
      return ((pw - rw) / nw - (pl - rl) / nl - 1 / (2 * beta)) ** 2;
    case 'simpo':
      return -logSigmoid(beta * (pw / nw - pl / nl) - simpoGamma);
  }
}

// Per pair: policy chosen, policy rejected, ref chosen, ref rejected, chosen tokens, rejected tokens.
const pairs = [
  [-12.5, -14.0, -13.0, -13.5, 5, 7],
  [-3.0, -2.0, -3.5, -2.5, 2, 2],
  [-40, -40, -40, -40, 9, 9], // h = 0
  [-1, -2000, -1000, -1, 3, 4], // βh ≈ +600: stable forms must stay finite
  [-2000, -1, -1, -1000, 4, 3], // βh ≈ −600
];

async function evaluate(type: PreferenceLossType, smoothing: number): Promise<number[]> {
  const graph = new Graph('losses');
  const column = (name: string) => graph.input(name, 'float64', [pairs.length]);
  const [policyChosen, policyRejected, referenceChosen, referenceRejected, chosenTokens, rejectedTokens] = [
    'pw',
    'pl',
    'rw',
    'rl',
    'nw',
    'nl',
  ].map(column);
  const result = preferenceLoss(
    type,
    { policyChosen, policyRejected, referenceChosen, referenceRejected, chosenTokens, rejectedTokens },
    { ...settings, labelSmoothing: smoothing },
  );
  graph.output('losses', result.losses);
  const feeds = Object.fromEntries(
    ['pw', 'pl', 'rw', 'rl', 'nw', 'nl'].map((name, c) => [
      name,
      hostTensor(
        'float64',
        [pairs.length],
        Float64Array.from(pairs, (row) => row[c]),
      ),
    ]),
  );
  const [out] = await runGraph(serializeModel(graph), [feeds]);
  return [...(out.losses.data as Float64Array)];
}

describe('preference losses', () => {
  const cases: [PreferenceLossType, number][] = [
    ['sigmoid', 0],
    ['sigmoid', 0.1],
    ['robust', 0.1],
    ['hinge', 0],
    ['ipo', 0],
    ['simpo', 0],
  ];
  for (const [type, smoothing] of cases) {
    it(`${type} (ε = ${smoothing}) matches the reference formula, finite at |βh| ≈ 600`, async () => {
      const losses = await evaluate(type, smoothing);
      losses.forEach((loss, i) => {
        const want = expected(type, pairs[i], smoothing);
        assert.ok(Number.isFinite(loss), `${type} pair ${i}: ${loss}`);
        assert.ok(
          Math.abs(loss - want) <= 1e-12 * Math.max(1, Math.abs(want)),
          `${type} pair ${i}: ${loss} vs ${want}`,
        );
      });
      if (type === 'sigmoid' && smoothing === 0)
        assert.ok(Math.abs(losses[2] - Math.LN2) < 1e-15, 'h = 0 gives ln 2');
    });
  }

  for (const type of ['sigmoid', 'robust', 'hinge', 'ipo', 'simpo'] as const) {
    it(`${type}: gradients w.r.t. the policy log-probs match finite differences (float64)`, async () => {
      const tokens = hostTensor('float64', [4], Float64Array.from([3, 5, 2, 7]));
      const references = hostTensor('float64', [4], Float64Array.from([-4, -6, -3, -9]));
      const result = await gradcheck({
        dtype: 'float64',
        inputs: [
          { name: 'pw', dims: [4] },
          { name: 'pl', dims: [4] },
        ],
        fixedInputs: [
          { name: 'rw', declared: [4], value: references },
          { name: 'rl', declared: [4], value: references },
          { name: 'nw', declared: [4], value: tokens },
          { name: 'nl', declared: [4], value: tokens },
        ],
        build: ([pw, pl], _graph, [rw, rl, nw, nl]) =>
          preferenceLoss(
            type,
            {
              policyChosen: pw,
              policyRejected: pl,
              referenceChosen: rw,
              referenceRejected: rl,
              chosenTokens: nw,
              rejectedTokens: nl,
            },
            settings,
          ).losses,
      });
      assert.ok(result.maxRelativeError < 1e-6, `relative error ${result.maxRelativeError}`);
    });
  }

  it('the NLL term is α times the mean negative log-prob per chosen token', async () => {
    const graph = new Graph('nll');
    const pw = graph.input('pw', 'float64', [2]);
    const nw = graph.input('nw', 'float64', [2]);
    graph.output(
      'nll',
      chosenNll({ policyChosen: pw, policyRejected: pw, chosenTokens: nw, rejectedTokens: nw }, 0.5),
    );
    const [out] = await runGraph(serializeModel(graph), [
      {
        pw: hostTensor('float64', [2], Float64Array.from([-6, -4])),
        nw: hostTensor('float64', [2], Float64Array.from([3, 2])),
      },
    ]);
    assert.equal((out.nll.data as Float64Array)[0], 0.5 * (10 / 5));
  });

  it('rejects beta ≤ 0, robust with ε ≥ 0.5, and reference-based losses without reference log-probs', () => {
    const graph = new Graph('bad');
    const x = graph.input('x', 'float64', [2]);
    const base = { policyChosen: x, policyRejected: x, chosenTokens: x, rejectedTokens: x };
    assert.throws(
      () => preferenceLoss('sigmoid', { ...base, referenceChosen: x, referenceRejected: x }, { beta: 0 }),
      /beta must be > 0, got 0/,
    );
    assert.throws(
      () =>
        preferenceLoss(
          'robust',
          { ...base, referenceChosen: x, referenceRejected: x },
          { beta: 0.1, labelSmoothing: 0.5 },
        ),
      /label_smoothing < 0.5/,
    );
    assert.throws(
      () => preferenceLoss('ipo', base, { beta: 0.1 }),
      /loss_type ipo needs reference log-probs/,
    );
  });
});
