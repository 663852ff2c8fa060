// spec.h: the one description of a network that both backends' Nets are built from: its
// layers, its loss and its optimizer with every hyper-parameter. Python builds it once from the
// layers' and the optimizer's get_config() (models.py: Sequential._spec); bind_util.h's
// parse_spec checks it and fills these structs; cpp/net.h and cuda/net.cuh take a NetSpec.
//
// Parameters are numbered in Keras's order: layer l's kernel (I, H) is parameter kernel(l), its
// bias (H) is bias(l); every parameter index in the core is computed here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace imdbfast {

enum LayerKind : int { LAYER_DENSE = 0 };

// One layer. The fields after `activation` say what Keras's layers may also say (a Dropout
// after it, its penalties); parse_spec refuses any value the kernels do not implement, so a new
// feature starts by accepting its field there. A frozen layer (trainable false) keeps its weights and slots in
// training, and its penalties do not count (Keras regularizes trainable weights only).
struct LayerSpec {
    int kind = LAYER_DENSE;
    int64_t units = 0;  // outputs
    int activation = ACT_LINEAR;
    double dropout = 0.0;                    // rate of a Dropout on this layer's output
    uint64_t dropout_seed = 0;               // its masks' seed (common.h: dropout_row_key)
    double kernel_l1 = 0.0, kernel_l2 = 0.0;  // kernel penalties (Keras's kernel_regularizer)
    double bias_l1 = 0.0, bias_l2 = 0.0;      // bias penalties (bias_regularizer)
    bool trainable = true;
};

namespace cpu {

enum OptKind : int { OPT_RMSPROP = 0, OPT_ADAM = 1, OPT_SGD = 2 };

// An optimizer and all its hyper-parameters (those of other kinds keep their defaults).
struct OptimizerConfig {
    int kind = OPT_RMSPROP;
    double learning_rate = 1e-3;
    double rho = 0.9;        // RMSprop
    double momentum = 0.0;   // RMSprop, SGD
    double epsilon = 1e-7;   // RMSprop, Adam
    double beta_1 = 0.9;     // Adam
    double beta_2 = 0.999;   // Adam
    bool centered = false;   // RMSprop
    bool nesterov = false;   // SGD
    bool amsgrad = false;    // Adam
};

// The optimizer's state slots per parameter, in Keras's order and with Keras's variable names:
//   RMSprop: velocity, [momentum if momentum > 0], [average_gradient if centered]
//   Adam:    momentum (m), velocity (v), [velocity_hat if amsgrad]
//   SGD:     [momentum if momentum > 0]
// Each field is that slot's position, or -1 when the configuration has no such slot; kernels
// find their slots by name (slot_of), never by position.
struct OptimizerSlots {
    int count = 0;
    int velocity = -1, momentum = -1, average_gradient = -1, velocity_hat = -1;
    std::vector<std::string> names() const;
};
OptimizerSlots optimizer_slots(const OptimizerConfig& c);

// Slot `index` of one parameter's slot pointers, or null when the configuration lacks it.
inline float* slot_of(float* const* slots, int index) {
    return index >= 0 ? slots[index] : nullptr;
}

}  // namespace cpu

// The rows every penalized parameter contributes to the weight penalty, in Keras's parameter
// order (common.h's penalty_total sums them so): parameter params[k] has counts[k] rows, from
// row start[k] of the table (start has one more entry: the table's size).
struct PenaltyTable {
    std::vector<int> params;
    std::vector<int64_t> counts, start{0};
    int size() const { return static_cast<int>(params.size()); }
    int64_t rows() const { return start.back(); }
};

struct NetSpec {
    int64_t input_dim = 0;
    std::vector<LayerSpec> layers;
    int loss = LOSS_MSE;
    cpu::OptimizerConfig optimizer;

    int n_layers() const { return static_cast<int>(layers.size()); }
    static int kernel(int l) { return 2 * l; }
    static int bias(int l) { return 2 * l + 1; }
    static int layer_of(int p) { return p / 2; }
    static bool is_kernel(int p) { return p % 2 == 0; }
    int n_params() const { return 2 * n_layers(); }
    // Inputs of layer l (the previous layer's units, or input_dim).
    int64_t inputs(int l) const { return l == 0 ? input_dim : layers[l - 1].units; }
    int64_t units(int l) const { return layers[l].units; }
    int64_t outputs() const { return layers.back().units; }
    // Shape of parameter p: (I, H) for a kernel, (H) for a bias.
    std::vector<int64_t> param_shape(int p) const {
        const int l = layer_of(p);
        if (is_kernel(p)) return {inputs(l), units(l)};
        return {units(l)};
    }
    int64_t param_size(int p) const {
        const int l = layer_of(p);
        return is_kernel(p) ? inputs(l) * units(l) : units(l);
    }
    // Penalty rows of parameter p: a kernel's I rows of H, a bias as one row of H (common.h's
    // penalty_row sums one).
    int64_t param_rows(int p) const { return is_kernel(p) ? inputs(layer_of(p)) : 1; }
    // The L1 and L2 factors of parameter p's penalty; both 0 when it has none or its layer is
    // frozen.
    double penalty_l1(int p) const {
        const LayerSpec& l = layers[layer_of(p)];
        return !l.trainable ? 0.0 : is_kernel(p) ? l.kernel_l1 : l.bias_l1;
    }
    double penalty_l2(int p) const {
        const LayerSpec& l = layers[layer_of(p)];
        return !l.trainable ? 0.0 : is_kernel(p) ? l.kernel_l2 : l.bias_l2;
    }
    bool penalized(int p) const { return penalty_l1(p) != 0.0 || penalty_l2(p) != 0.0; }
    PenaltyTable penalty_table() const {
        PenaltyTable t;
        for (int p = 0; p < n_params(); ++p) {
            if (!penalized(p)) continue;
            t.params.push_back(p);
            t.counts.push_back(param_rows(p));
            t.start.push_back(t.start.back() + param_rows(p));
        }
        return t;
    }
    // input_dim, then each layer's units.
    std::vector<int64_t> dims() const {
        std::vector<int64_t> d{input_dim};
        for (const auto& l : layers) d.push_back(l.units);
        return d;
    }
    std::vector<int> activations() const {
        std::vector<int> a;
        for (const auto& l : layers) a.push_back(l.activation);
        return a;
    }
};

}  // namespace imdbfast
