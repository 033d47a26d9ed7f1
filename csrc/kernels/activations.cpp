// activations.cpp: elementwise activations, forward then backward (compiled per ISA).
//
//   x, out, dout, dx: n contiguous elements.  act (irf::ref::Act):
//   gelu (erf):  out = 0.5 x (1 + erf(x / sqrt 2))                         (BERT "gelu")
//   gelu (tanh): out = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3) (GPT-2 "gelu_new")
//                computed as x * sigmoid(2u) = x / (1 + exp(-2u)) (the same function)
//   relu: max(x, 0);  sigmoid: 1 / (1 + exp(-x));  tanh: tanh(x)
// Backward takes x (gelu, relu) or the forward output (sigmoid, tanh) as `saved`.
#include "kernels.h"
#include "kernels/norm_act_util.h"

namespace irf {
namespace IRF_ISA {
namespace {

constexpr float kSqrtHalf = 0.70710678118654752f;
constexpr float kTanhK = 0.79788456080286536f;        // sqrt(2 / pi)
constexpr float kTanhC = 0.044715f;
// GELU-erf derivative: h(x) = x P(x^2) / Q(x^2) (see act_bwd), coefficients from degree 7 down
constexpr float kGeluDP[] = {8.5911845978e-11f, 2.9041662277e-08f, 3.2906516241e-07f, 4.0239611437e-05f,
                             -4.2528839142e-05f, 1.4714711488e-02f, -3.5249944167e-02f, 7.9788455904e-01f};
constexpr float kGeluDQ[] = {5.2227966362e-09f, 2.6518347943e-07f, 8.8115991324e-06f, 2.0582958393e-04f,
                             3.4404779808e-03f, 3.9826893392e-02f, 2.8915406017e-01f, 1.f};

#if defined(__AVX512F__)
// GELU on AVX-512 (both forms): a polynomial per interval of width 1/4 instead of erf's rational
// function (a division and ten FMAs), the erf derivative's (a division and fourteen), or the tanh
// form's exp and division.  gelu = x s(x), s = Phi (erf form) or sigmoid(2u) (tanh form); s - 1/2
// and gelu' - 1/2 are odd, so they are tabled on |x|: u = 4|x| rounds (adding 1.5 * 2^23) to the
// interval j, t = u - j is exact, and one vpermt2ps per coefficient fetches interval j's.  Tables
// and their float32 error from tools/fit_gelu_tables.py (our own least-squares fits).  Measured
// against float64 over [-8, 8]: gelu max abs error 3.6e-7 / 3.4e-7 (erf / tanh; at most 0.50 of
// the tests' 3e-7 + 2e-6 |y| -- the rational erf form's 1 + erf cancelled to 3x that in the left
// tail), gelu' 1.17e-7 / 1.15e-7 (2.3e-7 / 2.1e-7 before).  In-process A/B at 2048 x 768
// fwd+bwd (Zen 5): erf form 1.37x faster at 1 thread, 1.35x at 2; tanh form 1.85x / 1.25-1.43x;
// at 2048 x 3072 (from DRAM) erf 1.05x / 1.16x, tanh 1.30x / 0.96-1.06x.
// The erf form, s = Phi.  k(a) = s(a) - 1/2, degree 4 in t, coefficient d of interval j at [d][j]
alignas(64) constexpr float kGeluErfFwdC[5][32] = {
    {-3.483280307e-18f, 9.870632738e-02f, 1.914624572e-01f, 2.733726501e-01f,
     3.413447440e-01f, 3.943502307e-01f, 4.331927896e-01f, 4.599408507e-01f,
     4.772498608e-01f, 4.877755344e-01f, 4.937903285e-01f, 4.970202446e-01f,
     4.986501038e-01f, 4.994229674e-01f, 4.997673631e-01f, 4.999115765e-01f,
     4.999683201e-01f, 4.999893010e-01f, 4.999966025e-01f, 4.999989867e-01f,
     4.999997020e-01f, 4.999999106e-01f, 4.999999702e-01f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {9.973534942e-02f, 9.666684270e-02f, 8.801622689e-02f, 7.528436184e-02f,
     6.049276888e-02f, 4.566240311e-02f, 3.237953037e-02f, 2.156942524e-02f,
     1.349779218e-02f, 7.934923284e-03f, 4.382060375e-03f, 2.273365622e-03f,
     1.107937424e-03f, 5.072426866e-04f, 2.181577584e-04f, 8.814127796e-05f,
     3.345348523e-05f, 1.192769014e-05f, 3.995063707e-06f, 1.257021950e-06f,
     3.715465766e-07f, 1.031654548e-07f, 2.690947731e-08f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {1.387778781e-17f, -3.020825330e-03f, -5.500989966e-03f, -7.057878189e-03f,
     -7.561564911e-03f, -7.134723943e-03f, -6.071143784e-03f, -4.718304146e-03f,
     -3.374448977e-03f, -2.231704304e-03f, -1.369403675e-03f, -7.814792334e-04f,
     -4.154846829e-04f, -2.060732804e-04f, -9.544786008e-05f, -4.131847527e-05f,
     -1.672794860e-05f, -6.337175819e-06f, -2.247489647e-06f, -7.464676059e-07f,
     -2.322592536e-07f, -6.771752936e-08f, -1.850529685e-08f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {-1.035627094e-03f, -9.412233485e-04f, -6.861163420e-04f, -3.431393125e-04f,
     -1.326663437e-06f, 2.655808930e-04f, 4.196728696e-04f, 4.619816609e-04f,
     4.210611805e-04f, 3.356333473e-04f, 2.398631768e-04f, 1.557771175e-04f,
     9.269539441e-05f, 5.081367999e-05f, 2.575798680e-05f, 1.210727078e-05f,
     5.287896329e-06f, 2.149402235e-06f, 8.141437320e-07f, 2.876583380e-07f,
     9.488746855e-08f, 2.924143949e-08f, 8.423648445e-09f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {1.734723476e-17f, 4.602664558e-05f, 7.848720270e-05f, 8.930188778e-05f,
     7.856707089e-05f, 5.336041067e-05f, 2.378016688e-05f, -1.406552201e-06f,
     -1.744174915e-05f, -2.387516179e-05f, -2.312901779e-05f, -1.855837399e-05f,
     -1.299481755e-05f, -8.135835742e-06f, -4.616346814e-06f, -2.393847581e-06f,
     -1.140857535e-06f, -5.016789260e-07f, -2.041506377e-07f, -7.705040872e-08f,
     -2.701822943e-08f, -8.814613039e-09f, -2.678600675e-09f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
};
// h(a) = Phi(a) - 1/2 + a phi(a), degree 5 in t
alignas(64) constexpr float kGeluErfBwdC[6][32] = {
    {6.971403756e-18f, 1.953733563e-01f, 3.674951196e-01f, 4.992257059e-01f,
     5.833154917e-01f, 6.226615906e-01f, 6.274691820e-01f, 6.109261513e-01f,
     5.852317810e-01f, 5.591897368e-01f, 5.376110673e-01f, 5.220275521e-01f,
     5.119456649e-01f, 5.060173869e-01f, 5.028217435e-01f, 5.012338161e-01f,
     5.005036592e-01f, 5.001921058e-01f, 5.000685453e-01f, 5.000228882e-01f,
     5.000071526e-01f, 5.000020862e-01f, 5.000005960e-01f, 5.000001192e-01f,
     5.000000596e-01f, 5.000000000e-01f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {1.994711459e-01f, 1.872923672e-01f, 1.540285796e-01f, 1.082212627e-01f,
     6.049268320e-02f, 1.997724362e-02f, -8.094849065e-03f, -2.291741222e-02f,
     -2.699548379e-02f, -2.430067211e-02f, -1.862381957e-02f, -1.264573541e-02f,
     -7.755734492e-03f, -4.343430977e-03f, -2.236249391e-03f, -1.063296339e-03f,
     -4.684057785e-04f, -1.916201436e-04f, -7.292582450e-05f, -2.585481525e-05f,
     -8.548639926e-06f, -2.638352271e-06f, -7.606149666e-07f, -2.049539916e-07f,
     -5.164510242e-08f, -1.217508050e-08f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {8.326672685e-17f, -1.189442445e-02f, -2.062860131e-02f, -2.426136658e-02f,
     -2.268466726e-02f, -1.739093475e-02f, -1.062459499e-02f, -4.423512146e-03f,
     -7.820870707e-08f, 2.371147042e-03f, 3.081156407e-03f, 2.784041921e-03f,
     2.077454468e-03f, 1.352385152e-03f, 7.874672301e-04f, 4.157819203e-04f,
     2.007439762e-04f, 8.912104386e-05f, 3.652385203e-05f, 1.385723772e-05f,
     4.877816991e-06f, 1.595731533e-06f, 4.858106308e-07f, 1.377920853e-07f,
     3.644392876e-08f, 8.994955003e-09f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {-4.155611619e-03f, -3.591159126e-03f, -2.120180288e-03f, -2.971603535e-04f,
     1.260236604e-03f, 2.138538053e-03f, 2.255586907e-03f, 1.810613088e-03f,
     1.124822651e-03f, 4.801217874e-04f, 3.138813918e-05f, -1.954605978e-04f,
     -2.539094130e-04f, -2.199684968e-04f, -1.552495087e-04f, -9.486792260e-05f,
     -5.158070780e-05f, -2.532768667e-05f, -1.133469686e-05f, -4.651245490e-06f,
     -1.757659334e-06f, -6.135893500e-07f, -1.983556643e-07f, -5.949146598e-08f,
     -1.657924642e-08f, -4.298442047e-09f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {-1.318389842e-16f, 2.709523542e-04f, 4.364848719e-04f, 4.439334443e-04f,
     3.142013738e-04f, 1.212200805e-04f, -5.232754120e-05f, -1.538994984e-04f,
     -1.749803196e-04f, -1.398852182e-04f, -8.345664537e-05f, -3.280613237e-05f,
     -2.519095972e-07f, 1.419521232e-05f, 1.648733087e-05f, 1.312856330e-05f,
     8.552073268e-06f, 4.823637937e-06f, 2.418304348e-06f, 1.093465585e-06f,
     4.499854072e-07f, 1.695689491e-07f, 5.876810860e-08f, 1.879284994e-08f,
     5.558807192e-09f, 1.523924209e-09f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {5.816519479e-05f, 4.660365448e-05f, 1.782714935e-05f, -1.409143533e-05f,
     -3.524027488e-05f, -3.913087858e-05f, -2.853845399e-05f, -1.185936253e-05f,
     2.556102118e-06f, 1.028769657e-05f, 1.138219886e-05f, 8.489951142e-06f,
     4.554965926e-06f, 1.435746299e-06f, -2.995880379e-07f, -8.998456451e-07f,
     -8.668245641e-07f, -6.122257901e-07f, -3.596271085e-07f, -1.839690356e-07f,
     -8.383285888e-08f, -3.447784636e-08f, -1.290510099e-08f, -4.421620847e-09f,
     -1.392574722e-09f, -4.044243829e-10f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
};
constexpr float kGeluErfLimF = 5.6f, kGeluErfLimB = 6.2f;   // beyond: k = h = 1/2 (within 3.3e-8)
// The tanh form (GPT-2): s(x) = sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)) in place of Phi
// k(a) = s(a) - 1/2, degree 4 in t, coefficient d of interval j at [d][j]
alignas(64) constexpr float kGeluTanhFwdC[5][32] = {
    {-9.087197760e-18f, 9.870140254e-02f, 1.914280206e-01f, 2.732807398e-01f,
     3.411919773e-01f, 3.941713572e-01f, 4.330477118e-01f, 4.598830640e-01f,
     4.772988558e-01f, 4.879105091e-01f, 4.939662814e-01f, 4.971915781e-01f,
     4.987875223e-01f, 4.995173514e-01f, 4.998239577e-01f, 4.999415278e-01f,
     4.999824464e-01f, 4.999952614e-01f, 4.999988675e-01f, 4.999997616e-01f,
     4.999999404e-01f, 5.000000000e-01f, 5.000000000e-01f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {9.973534197e-02f, 9.665250033e-02f, 8.797083795e-02f, 7.521917671e-02f,
     6.044311821e-02f, 4.566438869e-02f, 3.244397417e-02f, 2.167350613e-02f,
     1.360009797e-02f, 8.000456728e-03f, 4.398516379e-03f, 2.250644611e-03f,
     1.066362369e-03f, 4.651343625e-04f, 1.856077579e-04f, 6.731348549e-05f,
     2.203839176e-05f, 6.469825621e-06f, 1.691621037e-06f, 3.912752788e-07f,
     7.952625225e-08f, 1.410828521e-08f, 2.170022606e-09f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {3.191891196e-16f, -3.034095280e-03f, -5.516257603e-03f, -7.060213946e-03f,
     -7.543604821e-03f, -7.103322074e-03f, -6.043110974e-03f, -4.708337598e-03f,
     -3.385567106e-03f, -2.255310537e-03f, -1.392925042e-03f, -7.962668897e-04f,
     -4.197779926e-04f, -2.030574542e-04f, -8.959137631e-05f, -3.582179488e-05f,
     -1.289283409e-05f, -4.148871085e-06f, -1.185668907e-06f, -2.989117434e-07f,
     -6.603661262e-08f, -1.270053573e-08f, -2.112509501e-09f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {-1.040694304e-03f, -9.442057926e-04f, -6.841977010e-04f, -3.369677870e-04f,
     5.014751878e-06f, 2.674865827e-04f, 4.156789219e-04f, 4.547721474e-04f,
     4.150356690e-04f, 3.335982328e-04f, 2.416614152e-04f, 1.593121124e-04f,
     9.581741324e-05f, 5.248645175e-05f, 2.607528950e-05f, 1.168364361e-05f,
     4.692584753e-06f, 1.678630269e-06f, 5.314020655e-07f, 1.479295264e-07f,
     3.598432841e-08f, 7.601181018e-09f, 1.385641157e-09f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {-1.044303533e-15f, 4.701302169e-05f, 7.980368537e-05f, 8.996027464e-05f,
     7.796849968e-05f, 5.187982242e-05f, 2.249357021e-05f, -1.655483402e-06f,
     -1.667438119e-05f, -2.277710701e-05f, -2.239143032e-05f, -1.842585152e-05f,
     -1.328390226e-05f, -8.523556971e-06f, -4.886010629e-06f, -2.498109325e-06f,
     -1.134522336e-06f, -4.553381245e-07f, -1.606134958e-07f, -4.951176535e-08f,
     -1.326300225e-08f, -3.069686505e-09f, -6.103182959e-10f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
};
// h(a) = s(a) - 1/2 + a s'(a), degree 5 in t
alignas(64) constexpr float kGeluTanhBwdC[6][32] = {
    {6.426877480e-19f, 1.953540891e-01f, 3.673698902e-01f, 4.989382625e-01f,
     5.829640627e-01f, 6.224926114e-01f, 6.277108192e-01f, 6.115970016e-01f,
     5.860992670e-01f, 5.599145293e-01f, 5.379515886e-01f, 5.219489336e-01f,
     5.115841627e-01f, 5.055643320e-01f, 5.024226308e-01f, 5.009513497e-01f,
     5.003350973e-01f, 5.001052618e-01f, 5.000293255e-01f, 5.000072122e-01f,
     5.000015497e-01f, 5.000002980e-01f, 5.000000596e-01f, 5.000000000e-01f,
     5.000000000e-01f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {1.994711459e-01f, 1.872371584e-01f, 1.538767219e-01f, 1.080768704e-01f,
     6.053705141e-02f, 2.029524557e-02f, -7.629549131e-03f, -2.256971225e-02f,
     -2.696876973e-02f, -2.459453978e-02f, -1.906134747e-02f, -1.301650517e-02f,
     -7.941914722e-03f, -4.349227995e-03f, -2.137364820e-03f, -9.400527342e-04f,
     -3.685148840e-04f, -1.281353761e-04f, -3.930786625e-05f, -1.057916415e-05f,
     -2.483536491e-06f, -5.055524070e-07f, -8.870011214e-08f, -1.333201549e-08f,
     -1.706089381e-09f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {1.110223025e-16f, -1.194333099e-02f, -2.066282183e-02f, -2.421216108e-02f,
     -2.255368419e-02f, -1.726775430e-02f, -1.061328501e-02f, -4.546689801e-03f,
     -1.792289113e-04f, 2.245506505e-03f, 3.065697383e-03f, 2.857590327e-03f,
     2.177591901e-03f, 1.426566974e-03f, 8.178898133e-04f, 4.127622233e-04f,
     1.834393624e-04f, 7.163257396e-05f, 2.448976556e-05f, 7.297908724e-06f,
     1.886339078e-06f, 4.206980293e-07f, 8.051307532e-08f, 1.314748133e-08f,
     1.821254703e-09f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {-4.176178481e-03f, -3.599310061e-03f, -2.101816703e-03f, -2.641720639e-04f,
     1.276273862e-03f, 2.116338117e-03f, 2.208241494e-03f, 1.774502918e-03f,
     1.125403563e-03f, 5.118859117e-04f, 6.836820830e-05f, -1.754636469e-04f,
     -2.554520324e-04f, -2.336048055e-04f, -1.691568323e-04f, -1.028067854e-04f,
     -5.351191430e-05f, -2.402392238e-05f, -9.315966963e-06f, -3.116191237e-06f,
     -8.965770917e-07f, -2.210381069e-07f, -4.648814667e-08f, -8.300498067e-09f,
     -1.251802995e-09f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {-3.469446952e-17f, 2.766208490e-04f, 4.427209205e-04f, 4.439344339e-04f,
     3.062459291e-04f, 1.118965884e-04f, -5.433676415e-05f, -1.468761038e-04f,
     -1.653055806e-04f, -1.350186358e-04f, -8.547801554e-05f, -3.833951632e-05f,
     -4.777069989e-06f, 1.276789772e-05f, 1.747432179e-05f, 1.480895207e-05f,
     9.742605471e-06f, 5.272389444e-06f, 2.396821628e-06f, 9.227516671e-07f,
     3.015882726e-07f, 8.363954151e-08f, 1.963933371e-08f, 3.891728717e-09f,
     6.482303028e-10f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
    {5.948828039e-05f, 4.737238123e-05f, 1.721355875e-05f, -1.579530544e-05f,
     -3.640950308e-05f, -3.842885781e-05f, -2.657404002e-05f, -1.050585615e-05f,
     2.232329507e-06f, 8.888635421e-06f, 1.021913613e-05f, 8.281098417e-06f,
     5.075438366e-06f, 2.057096481e-06f, 1.248025061e-08f, -9.124071880e-07f,
     -1.017207978e-06f, -7.416210224e-07f, -4.178507140e-07f, -1.910390495e-07f,
     -7.223663090e-08f, -2.276840050e-08f, -5.997408792e-09f, -1.319846676e-09f,
     -2.419728307e-10f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f, 0.000000000e+00f},
};
constexpr float kGeluTanhLimF = 5.4f, kGeluTanhLimB = 6.0f;

// Interval j's polynomial (NC coefficients, table c) at |x| = ax, or 1/2 where ax >= lim
template <int NC>
IRF_INLINE vf gelu_table(vf ax, const float (&c)[NC][32], float lim) {
  const vf u = vmul(ax, vset1(4.f));
  const vf r = vadd(u, vset1(12582912.f));   // 1.5 * 2^23: round(u) in the low mantissa bits
  const vf t = vsub(u, vsub(r, vset1(12582912.f)));
  const __m512i j = _mm512_castps_si512(r);   // vpermt2ps reads the low 5 bits of each lane
  vf p = _mm512_permutex2var_ps(_mm512_load_ps(c[NC - 1]), j, _mm512_load_ps(c[NC - 1] + 16));
  for (int d = NC - 2; d >= 0; --d)
    p = vfma(p, t, _mm512_permutex2var_ps(_mm512_load_ps(c[d]), j, _mm512_load_ps(c[d] + 16)));
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, vset1(lim), _CMP_GE_OQ), p, vset1(0.5f));   // NaN: p (NaN)
}
#endif

template <int ACT>
IRF_INLINE vf act_fwd(vf x) {
  const vf one = vset1(1.f);
#if defined(__AVX512F__)
  if (ACT == ref::kActGeluErf) {   // |x| k(|x|) + x / 2 = x Phi(x)
    const vf ax = vabs(x);
    return vfma(ax, gelu_table(ax, kGeluErfFwdC, kGeluErfLimF), vmul(vset1(0.5f), x));
  }
#endif
  if (ACT == ref::kActGeluErf) {   // 0.5 x (1 + erf(x / sqrt 2))  (AVX2, generic)
    const vf h = vmul(vset1(0.5f), x);
    return vfma(h, verf(vmul(x, vset1(kSqrtHalf))), h);
  }
#if defined(__AVX512F__)
  if (ACT == ref::kActGeluTanh) {   // |x| k(|x|) + x / 2 = x s(x)
    const vf ax = vabs(x);
    return vfma(ax, gelu_table(ax, kGeluTanhFwdC, kGeluTanhLimF), vmul(vset1(0.5f), x));
  }
#endif
  if (ACT == ref::kActGeluTanh) {   // x / (1 + exp(-2u))  (AVX2, generic)
    const vf x2 = vmul(x, x);
    const vf m2u = vmul(vmul(x, vset1(-2.f * kTanhK)), vfma(x2, vset1(kTanhC), one));
    return vdiv(x, vadd(one, vexp(m2u)));
  } else if (ACT == ref::kActRelu) {
    return vmax(vzero(), x);   // operand order keeps NaN
  } else if (ACT == ref::kActSigmoid) {
    return vdiv(one, vadd(one, vexp(vsub(vzero(), x))));
  } else {
    return vtanh(x);
  }
}

// dx = dout * d out / d x, s = saved (x or the output, see above)
template <int ACT>
IRF_INLINE vf act_bwd(vf d, vf s) {
  const vf one = vset1(1.f);
#if defined(__AVX512F__)
  if (ACT == ref::kActGeluErf) {   // Phi(x) + x phi(x) = 1/2 + sign(x) h(|x|)
    const vf h = gelu_table(vabs(s), kGeluErfBwdC, kGeluErfLimB);
    return vmul(d, vadd(vset1(0.5f), vcopysign(h, s)));
  }
#endif
  if (ACT == ref::kActGeluErf) {   // (AVX2, generic)
    // d/dx [x Phi(x)] = Phi(x) + x phi(x) = 0.5 + h(x), h odd (Phi the normal CDF, phi its
    // density).  h(x) = x P(x^2) / Q(x^2) for |x| <= 6.2 (P, Q of degree 7: our own float64
    // rational fit on [0, 6.2], max error 2.4e-10 before float32 rounding), +-0.5 beyond
    // (h(6.2) = 0.5 - 1.1e-8).  One division instead of an erf and an exp: ~2x faster.
    const vf ax = vabs(s), a = vmin(vset1(6.2f), ax);   // operand order keeps NaN
    const vf h = vselect_lt(vset1(6.2f), ax, vset1(0.5f), vodd_rational(a, kGeluDP, kGeluDQ));
    return vmul(d, vadd(vset1(0.5f), vcopysign(h, s)));
  }
#if defined(__AVX512F__)
  if (ACT == ref::kActGeluTanh) {   // s(x) + x s'(x) = 1/2 + sign(x) h(|x|)
    const vf h = gelu_table(vabs(s), kGeluTanhBwdC, kGeluTanhLimB);
    return vmul(d, vadd(vset1(0.5f), vcopysign(h, s)));
  }
#endif
  if (ACT == ref::kActGeluTanh) {   // (AVX2, generic)
    // out = x * sig, sig = 1 / (1 + e), e = exp(-2u):  d out / dx = sig + x sig (1 - sig) 2 u',
    // u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2), and sig (1 - sig) = e sig^2 (no cancellation).
    // e is capped at exp(88) so that e sig^2 stays finite (it is ~0 there anyway).
    const vf x2 = vmul(s, s);
    const vf m2u = vmul(vmul(s, vset1(-2.f * kTanhK)), vfma(x2, vset1(kTanhC), one));
    const vf e = vexp(vmin(vset1(88.f), m2u));
    const vf sig = vdiv(one, vadd(one, e));
    const vf du2 = vmul(vset1(2.f * kTanhK), vfma(x2, vset1(3.f * kTanhC), one));
    const vf g = vfma(vmul(s, vmul(e, vmul(sig, sig))), du2, sig);
    return vmul(d, g);
  } else if (ACT == ref::kActRelu) {   // out = max(x, 0): passes dout where x > 0
    return vselect_lt(vzero(), s, d, vzero());
  } else if (ACT == ref::kActSigmoid) {   // d sigmoid = out (1 - out)
    return vmul(d, vmul(s, vsub(one, s)));
  } else {   // d tanh = 1 - out^2 = (1 - out)(1 + out)
    return vmul(d, vmul(vsub(one, s), vadd(one, s)));
  }
}

// One thread's range [lo, hi) of out = act(x) (NT: streaming stores; lo is a multiple of
// kBlock, so out + lo is as aligned as out)
template <int ACT, bool NT>
IRF_INLINE void fwd_range(float* out, const float* x, i64 lo, i64 hi) {
  i64 i = lo;
  for (; i + 2 * W <= hi; i += 2 * W) {
    const vf y0 = act_fwd<ACT>(vload(x + i)), y1 = act_fwd<ACT>(vload(x + i + W));
    vput<NT>(out + i, y0);
    vput<NT>(out + i + W, y1);
  }
  for (; i < hi; i += W) {
    const int r = hi - i < W ? int(hi - i) : W;
    vstore_part(out + i, act_fwd<ACT>(vload_part(x + i, r)), r);
  }
  if (NT) _mm_sfence();
}

template <int ACT, bool NT>
IRF_INLINE void bwd_range(float* dx, const float* dout, const float* saved, i64 lo, i64 hi) {
  i64 i = lo;
  for (; i + 2 * W <= hi; i += 2 * W) {
    const vf g0 = act_bwd<ACT>(vload(dout + i), vload(saved + i));
    const vf g1 = act_bwd<ACT>(vload(dout + i + W), vload(saved + i + W));
    vput<NT>(dx + i, g0);
    vput<NT>(dx + i + W, g1);
  }
  for (; i < hi; i += W) {
    const int r = hi - i < W ? int(hi - i) : W;
    vstore_part(dx + i, act_bwd<ACT>(vload_part(dout + i, r), vload_part(saved + i, r)), r);
  }
  if (NT) _mm_sfence();
}

template <int ACT>
void fwd_impl(float* out, const float* x, i64 n, int nthreads) {
  const bool nt = stream_ok(out, n, W, nthreads);
  parallel_elems(n, nthreads, [&](i64 lo, i64 hi) {
    if (nt) fwd_range<ACT, true>(out, x, lo, hi);
    else fwd_range<ACT, false>(out, x, lo, hi);
  });
}

template <int ACT>
void bwd_impl(float* dx, const float* dout, const float* saved, i64 n, int nthreads) {
  const bool nt = stream_ok(dx, n, W, nthreads);
  parallel_elems(n, nthreads, [&](i64 lo, i64 hi) {
    if (nt) bwd_range<ACT, true>(dx, dout, saved, lo, hi);
    else bwd_range<ACT, false>(dx, dout, saved, lo, hi);
  });
}

void act_forward(float* out, const float* x, i64 n, int act, int nthreads) {
  switch (act) {
    case ref::kActGeluErf: fwd_impl<ref::kActGeluErf>(out, x, n, nthreads); break;
    case ref::kActGeluTanh: fwd_impl<ref::kActGeluTanh>(out, x, n, nthreads); break;
    case ref::kActRelu: fwd_impl<ref::kActRelu>(out, x, n, nthreads); break;
    case ref::kActSigmoid: fwd_impl<ref::kActSigmoid>(out, x, n, nthreads); break;
    case ref::kActTanh: fwd_impl<ref::kActTanh>(out, x, n, nthreads); break;
    default: break;   // validated by the binding
  }
}

void act_backward(float* dx, const float* dout, const float* saved, i64 n, int act, int nthreads) {
  switch (act) {
    case ref::kActGeluErf: bwd_impl<ref::kActGeluErf>(dx, dout, saved, n, nthreads); break;
    case ref::kActGeluTanh: bwd_impl<ref::kActGeluTanh>(dx, dout, saved, n, nthreads); break;
    case ref::kActRelu: bwd_impl<ref::kActRelu>(dx, dout, saved, n, nthreads); break;
    case ref::kActSigmoid: bwd_impl<ref::kActSigmoid>(dx, dout, saved, n, nthreads); break;
    case ref::kActTanh: bwd_impl<ref::kActTanh>(dx, dout, saved, n, nthreads); break;
    default: break;
  }
}

// simd.h transcendentals, for tests/test_simd_math.py: fn 0 vexp, 1 vtanh, 2 verf.
void simd_math(float* out, const float* x, i64 n, int fn) {
  for (i64 i = 0; i < n; i += W) {
    const int r = n - i < W ? int(n - i) : W;
    const vf v = vload_part(x + i, r);
    vstore_part(out + i, fn == 0 ? vexp(v) : fn == 1 ? vtanh(v) : verf(v), r);
  }
}

}  // namespace

void register_activations(KernelTable& t) {
  t.act_forward = &act_forward;
  t.act_backward = &act_backward;
  t.simd_math = &simd_math;
}

}  // namespace IRF_ISA
}  // namespace irf
