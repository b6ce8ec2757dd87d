# Reference numbers for tests/test_regression.py, computed with R's lm/glm,
# sandwich (vcovHC / vcovCL) and lmtest (coeftest / coefci).
#
# Rerun from the repository root (needs R with the sandwich and lmtest packages):
#
#     Rscript tests/reference/regression_reference.R
#
# It writes, next to this script:
#   regression_data.csv       the simulated data set (set.seed below), read back before fitting
#                             so that R and Python fit exactly the same numbers
#   regression_cases.csv      one row per case: the simval arguments (formula_py, family, cov,
#                             absorb, conf_level) and the equivalent R call (formula_r)
#   regression_reference.csv  one row per case and term (R's term names): estimate, std_error,
#                             statistic, p_value, ci_low, ci_high; NA rows are aliased terms
#
# Conventions (the ones simval.regression.fit documents):
#   lm:  t with the residual df; with clustered errors t with G - 1 df.
#   glm: normal (coeftest/coefci use df = Inf for glm).
#   glm is polished to the fully converged MLE (glm_converged below) so that both sides agree
#   to 1e-6 even for a coefficient near zero; epsilon = 1e-10 keeps glm's rank tolerance,
#   min(1e-7, epsilon / 1000), loose enough to alias bc.

suppressPackageStartupMessages({
  library(sandwich)
  library(lmtest)
})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
out_dir <- if (length(script) == 1) dirname(script) else "tests/reference"

# ---- data -------------------------------------------------------------------
set.seed(20240611)
n <- 400
n_clusters <- 25
g <- sample(seq_len(n_clusters), n, replace = TRUE)
u <- rnorm(n_clusters, sd = 0.7)[g]
arm <- sample(c("a", "b", "c"), n, replace = TRUE)
fe <- sample(paste0("f", 1:8), n, replace = TRUE)
fe_effect <- setNames(rnorm(8), paste0("f", 1:8))[fe]
x <- rnorm(n)
z <- exp(rnorm(n, sd = 0.5))
is_b <- as.numeric(arm == "b")
is_c <- as.numeric(arm == "c")

y <- 1 + 0.5 * is_b - 0.3 * is_c + 0.8 * x + 0.4 * is_b * x + 0.2 * x^2 + 0.5 * log(z) +
  u + fe_effect + rnorm(n) * (1 + 0.5 * abs(x))
yb <- rbinom(n, 1, plogis(-0.3 + 0.4 * is_b - 0.2 * is_c + 0.6 * x - 0.3 * is_c * x +
                            0.1 * x^2 + 0.4 * log(z) + u))
yp <- rbinom(n, 1, pnorm(0.2 + 0.3 * is_b - 0.4 * is_c + 0.5 * x + 0.3 * log(z) + 0.5 * u))
yc <- rpois(n, exp(0.3 + 0.2 * is_b + 0.3 * is_c + 0.3 * x + 0.4 * log(z) + 0.3 * u))
bc <- as.numeric(arm != "a")             # exactly collinear with the intercept and arm: aliased
xna <- ifelse(runif(n) < 0.1, NA, x)     # about 10% missing: dropped like na.omit
zna <- ifelse(runif(n) < 0.05, NA, z)

data <- data.frame(y, yb, yp, yc, x, z, bc, xna, zna, arm, fe, g)
data_file <- file.path(out_dir, "regression_data.csv")
write.csv(data, data_file, row.names = FALSE, na = "")
data <- read.csv(data_file)

# ---- cases ------------------------------------------------------------------
main_py <- "C(arm) * x + I(x**2) + np.log(z)"
main_r <- "factor(arm) * x + I(x^2) + log(z)"
covs <- c("nonrobust", "HC0", "HC1", "HC2", "HC3", "cluster:g")

case <- function(id, family, cov, formula_py, formula_r, absorb = "", conf_level = 0.95) {
  data.frame(case = id, family = family, cov = cov, absorb = absorb, conf_level = conf_level,
             formula_py = formula_py, formula_r = formula_r)
}

cases <- list()
for (cv in covs) {
  tag <- sub(":", "_", cv)
  cases[[length(cases) + 1]] <- case(paste0("ols_", tag), "ols", cv,
                                     paste("y ~", main_py), paste("y ~", main_r))
  cases[[length(cases) + 1]] <- case(paste0("logit_", tag), "logit", cv,
                                     paste("yb ~", main_py), paste("yb ~", main_r))
  cases[[length(cases) + 1]] <- case(paste0("probit_", tag), "probit", cv,
                                     "yp ~ C(arm) + x + np.log(z)", "yp ~ factor(arm) + x + log(z)")
  cases[[length(cases) + 1]] <- case(paste0("poisson_", tag), "poisson", cv,
                                     "yc ~ C(arm) + x + np.log(z)", "yc ~ factor(arm) + x + log(z)")
}
for (cv in c("nonrobust", "HC0", "HC1", "cluster:g")) {
  # absorbed fixed effects of fe  ==  lm with factor(fe) dummies, keeping the slopes
  cases[[length(cases) + 1]] <- case(paste0("absorb_", sub(":", "_", cv)), "ols", cv,
                                     "y ~ C(arm) + x + np.log(z)",
                                     "y ~ factor(arm) + x + log(z) + factor(fe)", absorb = "fe")
}
cases[[length(cases) + 1]] <- case("ols_aliased", "ols", "HC1",
                                   "y ~ C(arm) + x + bc", "y ~ factor(arm) + x + bc")
cases[[length(cases) + 1]] <- case("logit_aliased", "logit", "HC3",
                                   "yb ~ C(arm) + x + bc", "yb ~ factor(arm) + x + bc")
cases[[length(cases) + 1]] <- case("ols_missing", "ols", "HC1",
                                   "y ~ C(arm) + xna + np.log(zna)", "y ~ factor(arm) + xna + log(zna)")
cases[[length(cases) + 1]] <- case("ols_level90", "ols", "cluster:g",
                                   "y ~ x + np.log(z)", "y ~ x + log(z)", conf_level = 0.90)
cases[[length(cases) + 1]] <- case("logit_level90", "logit", "HC1",
                                   "yb ~ x + np.log(z)", "yb ~ x + log(z)", conf_level = 0.90)
cases <- do.call(rbind, cases)

# ---- fits -------------------------------------------------------------------
glm_family <- list(logit = binomial("logit"), probit = binomial("probit"), poisson = poisson("log"))

# glm stops when the deviance stops moving, which leaves the coefficients of a non-canonical
# link (probit: Fisher scoring converges only linearly) about 1e-8 from the MLE, and computes the
# covariance from the weights of the last-but-one iterate. Restarting glm from its own estimate
# until the coefficients stop moving gives the fully converged MLE, with its covariance at the MLE.
glm_converged <- function(f, family) {
  control <- glm.control(epsilon = 1e-10, maxit = 100)
  m <- glm(f, family = family, data = data, control = control)
  for (i in 1:100) {
    start <- coef(m)
    start[is.na(start)] <- 0
    polished <- glm(f, family = family, data = data, start = start, control = control)
    step <- max(abs(coef(polished) - coef(m)), na.rm = TRUE)
    m <- polished
    if (step < 1e-14) break
  }
  m
}

fit_case <- function(cs) {
  f <- as.formula(cs$formula_r)
  m <- if (cs$family == "ols") lm(f, data = data) else glm_converged(f, glm_family[[cs$family]])
  cluster <- if (startsWith(cs$cov, "cluster:")) sub("cluster:", "", cs$cov) else NULL
  vc <- if (cs$cov == "nonrobust") {
    vcov(m)
  } else if (!is.null(cluster)) {
    vcovCL(m, cluster = as.formula(paste0("~", cluster)), type = "HC1")
  } else {
    vcovHC(m, type = cs$cov)
  }
  df <- if (cs$family != "ols") {
    Inf
  } else if (!is.null(cluster)) {
    length(unique(data[[cluster]])) - 1
  } else {
    m$df.residual
  }
  ct <- coeftest(m, vcov. = vc, df = df)
  ci <- coefci(m, vcov. = vc, df = df, level = cs$conf_level)
  est <- coef(m)
  keep <- if (cs$absorb != "") !startsWith(names(est), "factor(fe)") & names(est) != "(Intercept)"
          else rep(TRUE, length(est))
  terms <- names(est)[keep]
  pick <- function(mat, col) unname(mat[match(terms, rownames(mat)), col])
  data.frame(case = cs$case, term = terms, estimate = unname(est[keep]),
             std_error = pick(ct, 2), statistic = pick(ct, 3), p_value = pick(ct, 4),
             ci_low = pick(ci, 1), ci_high = pick(ci, 2), nobs = nobs(m))
}

reference <- do.call(rbind, lapply(seq_len(nrow(cases)), function(i) fit_case(cases[i, ])))

write.csv(cases, file.path(out_dir, "regression_cases.csv"), row.names = FALSE, na = "")
full_precision <- function(v) if (is.double(v)) ifelse(is.na(v), NA, sprintf("%.17g", v)) else v
reference[] <- lapply(reference, full_precision)
write.csv(reference, file.path(out_dir, "regression_reference.csv"), row.names = FALSE, na = "")
cat("wrote", nrow(cases), "cases and", nrow(reference), "reference rows to", out_dir, "\n")
