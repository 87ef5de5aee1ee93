// Gathers (embedding lookup, token log-probs) with gradients that scatter-add into zeros, so repeated
// indices accumulate; the scatters themselves appear only in backward graphs and take no gradient.

import { attr, type Tensor } from '../graph.ts';
import { type GradientRule, outputGradient, requireDtype } from './core.ts';
import { dimsEqual, formatDims, normalizeAxis, ShapeError } from './dims.ts';
import { cast } from './elementwise.ts';
import { unsqueeze, zerosLike } from './shape.ts';

const indexTypes = ['int64', 'int32'] as const;

/** data [V, D…] at indices [I…] along `axis` → [I…, D…] for axis 0 (an embedding lookup). */
export function gather(data: Tensor, indices: Tensor, axis = 0): Tensor {
  requireDtype('Gather', indices, indexTypes);
  const at = normalizeAxis('Gather', axis, data.rank);
  const dims = [...data.dims.slice(0, at), ...indices.dims, ...data.dims.slice(at + 1)];
  return data.graph.addNode('Gather', [data, indices], [{ dtype: data.dtype, dims }], {
    axis: attr.int(at),
  })[0];
}

/** Scatter-adds g rows into zeros [V, D…]: a row looked up twice gets both gradients. */
export const gatherGradient: GradientRule = (context) => {
  const [data, indices] = context.inputs as Tensor[];
  const axis = context.node.attributes.axis.value as number;
  return [
    () => {
      if (axis !== 0) {
        throw new ShapeError(
          `Gather (node ${context.node.name}): gradient is implemented for axis 0, got axis ${axis}`,
        );
      }
      const positions = unsqueeze(cast(indices, 'int64'), -1); // [I…, 1]
      return scatterND(zerosLike(data), positions, outputGradient(context), 'add');
    },
    undefined,
  ];
};

/** out[i][j][k] = data[i][index[i][j][k]][k] for axis 1: picks one element per index position. */
export function gatherElements(data: Tensor, indices: Tensor, axis: number): Tensor {
  requireDtype('GatherElements', indices, indexTypes);
  const at = normalizeAxis('GatherElements', axis, data.rank);
  const fits =
    indices.rank === data.rank && indices.dims.every((dim, i) => i === at || dimsEqual(dim, data.dims[i]));
  if (!fits) {
    throw new ShapeError(
      `GatherElements: indices ${formatDims(indices.dims)} must match data ${formatDims(data.dims)} off axis ${at}`,
    );
  }
  const outputs = [{ dtype: data.dtype, dims: indices.dims }];
  return data.graph.addNode('GatherElements', [data, indices], outputs, { axis: attr.int(at) })[0];
}

export const gatherElementsGradient: GradientRule = (context) => {
  const [data, indices] = context.inputs as Tensor[];
  const axis = context.node.attributes.axis.value as number;
  return [() => scatterElements(zerosLike(data), indices, outputGradient(context), axis, 'add'), undefined];
};

export type ScatterReduction = 'none' | 'add';

/** data with updates written (or added) at index tuples: indices [I…, k] address data's first k dims. */
export function scatterND(
  data: Tensor,
  indices: Tensor,
  updates: Tensor,
  reduction: ScatterReduction,
): Tensor {
  requireDtype('ScatterND', indices, ['int64']);
  const inputs = [data, indices, updates];
  return data.graph.addNode('ScatterND', inputs, [{ dtype: data.dtype, dims: data.dims }], {
    reduction: attr.string(reduction),
  })[0];
}

/** data with updates written (or added) at per-element indices along `axis` (GatherElements' inverse). */
export function scatterElements(
  data: Tensor,
  indices: Tensor,
  updates: Tensor,
  axis: number,
  reduction: ScatterReduction,
): Tensor {
  requireDtype('ScatterElements', indices, indexTypes);
  const attributes = { axis: attr.int(axis), reduction: attr.string(reduction) };
  return data.graph.addNode(
    'ScatterElements',
    [data, indices, updates],
    [{ dtype: data.dtype, dims: data.dims }],
    attributes,
  )[0];
}
