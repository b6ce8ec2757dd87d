# Reference numbers for survey weights in simval.regression.fit(weights=...)
# (tests/test_regression_weights.py): R's lm / glm with weights = the survey weight, and
# sandwich's vcovHC / vcovCL on them; plus survey::svyglm on a design of independent
# units with those weights, whose covariance is HC0 times n / (n - 1).
#
# Rerun from the repository root (Debian: apt-get install r-base-core r-cran-sandwich
# r-cran-survey):
#
#     Rscript tests/reference/weights_reference.R
#
# It writes, next to this script:
#   weights_data.csv       the simulated data set (set.seed below), read back before fitting
#   weights_cases.csv      one row per case: simval's arguments and the R call
#   weights_reference.csv  one row per case and term: estimate, std_error
#
# glm with non-integer weights warns for the binomial family ("non-integer #successes"),
# as survey weights always are; the estimates are the weighted MLE all the same, and
# epsilon = 1e-12 runs IRLS to full convergence.

suppressPackageStartupMessages({
  library(sandwich)
  library(survey)
})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
out_dir <- if (length(script) == 1) dirname(script) else "tests/reference"

set.seed(20261203)
n <- 400
arm <- sample(c("a", "b", "c"), n, replace = TRUE)
g <- sample(seq_len(30), n, replace = TRUE)
x <- rnorm(n)
w <- exp(rnorm(n, sd = 0.6)) * ifelse(x > 0, 1.5, 1)  # unequal selection
y <- 1 + 0.5 * (arm == "b") - 0.3 * (arm == "c") + 0.8 * x + rnorm(n) * (1 + 0.5 * abs(x))
yb <- rbinom(n, 1, plogis(-0.2 + 0.5 * (arm == "b") + 0.7 * x))
yc <- rpois(n, exp(0.3 + 0.4 * x - 0.2 * (arm == "c")))
write.csv(data.frame(arm, g, x, w, y, yb, yc), file.path(out_dir, "weights_data.csv"),
          row.names = FALSE)
d <- read.csv(file.path(out_dir, "weights_data.csv"))

py_names <- function(names) {
  names <- sub("^\\(Intercept\\)$", "Intercept", names)
  sub("^arm(.)$", "C(arm)[T.\\1]", names)
}

cases <- list()
reference <- list()
add <- function(case, formula_py, family, cov, fit, vcov) {
  cases[[length(cases) + 1]] <<- data.frame(
    case = case, formula_py = formula_py, family = family, cov = cov
  )
  reference[[length(reference) + 1]] <<- data.frame(
    case = case, term = py_names(names(coef(fit))), estimate = unname(coef(fit)),
    std_error = unname(sqrt(diag(vcov)))
  )
}

ols <- lm(y ~ arm + x, data = d, weights = w)
add("ols_nonrobust", "y ~ C(arm) + x", "ols", "nonrobust", ols, vcov(ols))
for (type in c("HC0", "HC1", "HC2", "HC3")) {
  add(paste0("ols_", type), "y ~ C(arm) + x", "ols", type, ols, vcovHC(ols, type = type))
}
add("ols_cluster", "y ~ C(arm) + x", "ols", "cluster:g", ols,
    vcovCL(ols, cluster = ~g, type = "HC1"))

glms <- list(
  logit = list(formula = yb ~ arm + x, py = "yb ~ C(arm) + x", family = binomial("logit")),
  probit = list(formula = yb ~ arm + x, py = "yb ~ C(arm) + x", family = binomial("probit")),
  poisson = list(formula = yc ~ arm + x, py = "yc ~ C(arm) + x", family = poisson())
)
for (name in names(glms)) {
  spec <- glms[[name]]
  fit <- suppressWarnings(glm(spec$formula, data = d, weights = w, family = spec$family,
                              control = glm.control(epsilon = 1e-12, maxit = 100)))
  for (type in c("HC0", "HC1")) {
    add(paste0(name, "_", type), spec$py, name, type, fit, vcovHC(fit, type = type))
  }
  add(paste0(name, "_cluster"), spec$py, name, "cluster:g", fit,
      vcovCL(fit, cluster = ~g, type = "HC1"))
}

# svyglm on independent units: its covariance is HC0 * n / (n - 1) (checked in the test)
design <- svydesign(ids = ~1, weights = ~w, data = d)
svy <- suppressWarnings(svyglm(yb ~ arm + x, design = design, family = quasibinomial()))
add("logit_svyglm", "yb ~ C(arm) + x", "logit", "svyglm", svy, vcov(svy))

write.csv(do.call(rbind, cases), file.path(out_dir, "weights_cases.csv"), row.names = FALSE)
out <- do.call(rbind, reference)
write.csv(format(out, digits = 15), file.path(out_dir, "weights_reference.csv"),
          row.names = FALSE)
cat("wrote", nrow(out), "reference rows\n")
