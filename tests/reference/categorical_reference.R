# Reference numbers for the categorical-outcome families of simval.regression.fit
# (tests/test_regression_categorical.py): nnet::multinom for family="mnlogit" and
# MASS::polr for family="ologit" / "oprobit".
#
# Rerun from the repository root (needs R with nnet, MASS, sandwich and numDeriv;
# Debian: apt-get install r-base-core r-cran-nnet r-cran-mass r-cran-sandwich r-cran-numderiv):
#
#     Rscript tests/reference/categorical_reference.R
#
# It writes, next to this script:
#   categorical_data.csv       the simulated data set (set.seed below), read back before fitting
#   categorical_cases.csv      one row per case: simval's arguments and the R call
#   categorical_reference.csv  one row per case and coefficient: estimate, std_error
#
# Conventions (the ones simval.regression documents):
#   Both packages are run to full convergence (tight tolerances below), so that both sides
#   reach the same maximum to 1e-8.
#   multinom: coefficients per non-reference level (the first level is the reference), named
#   "<term> | <outcome>=<level>"; nonrobust = solve(Hessian) of multinom(Hess = TRUE), which
#   nnet computes analytically.
#   polr: slopes, then the thresholds zeta named "threshold <a>|<b>"; P(y <= k) = F(zeta_k - x'b).
#   polr's own vcov comes from optim's finite-difference Hessian (step 1e-3), accurate to
#   about 1e-5; nonrobust here is the inverse of numDeriv's Richardson Hessian of the same
#   log-likelihood at polr's estimates (checked against vcov(polr) below).
#   HC0 / HC1: the sandwich bread %*% meat %*% bread with bread = that inverse Hessian and
#   meat = sum of the outer products of the per-respondent score (numDeriv's jacobian of the
#   per-respondent log-likelihood, not a hand-derived formula); HC1 scales by n / (n - k).

suppressPackageStartupMessages({
  library(nnet)
  library(MASS)
  library(numDeriv)
})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
out_dir <- if (length(script) == 1) dirname(script) else "tests/reference"

# ---- data -------------------------------------------------------------------
set.seed(20261202)
n <- 500
arm <- sample(c("a", "b", "c"), n, replace = TRUE)
x <- rnorm(n)
z <- runif(n, 18, 80)
is_b <- as.numeric(arm == "b")
is_c <- as.numeric(arm == "c")
eta <- 0.6 * x - 0.5 * is_b + 0.4 * is_c + 0.02 * (z - 50)
latent <- eta + rlogis(n)
ord <- cut(latent, c(-Inf, -1, 0.3, 1.5, Inf), labels = FALSE)
latent_p <- 0.5 * eta + rnorm(n)
ordp <- cut(latent_p, c(-Inf, -0.6, 0.2, Inf), labels = FALSE)
u <- cbind(0, 0.3 + 0.5 * x - 0.6 * is_b, -0.2 - 0.4 * x + 0.7 * is_c + 0.015 * (z - 50))
p <- exp(u) / rowSums(exp(u))
party <- c("Labour", "Conservative", "Liberal Democrat")[
  apply(p, 1, function(pr) sample(1:3, 1, prob = pr))
]
write.csv(data.frame(arm, x, z, ord, ordp, party), file.path(out_dir, "categorical_data.csv"),
          row.names = FALSE)
d <- read.csv(file.path(out_dir, "categorical_data.csv"))

# ---- helpers ----------------------------------------------------------------
py_names <- function(names) {  # R's design column names as formulaic writes them
  names <- sub("^\\(Intercept\\)$", "Intercept", names)
  sub("^arm(.)$", "C(arm)[T.\\1]", names)
}

sandwiches <- function(theta, loglik_i, hessian_inv) {
  scores <- jacobian(function(t) loglik_i(t), theta)
  meat <- crossprod(scores)
  hc0 <- hessian_inv %*% meat %*% hessian_inv
  n <- nrow(scores)
  list(HC0 = hc0, HC1 = hc0 * n / (n - length(theta)))
}

rows_of <- function(case, names, theta, covs) {
  do.call(rbind, lapply(names(covs), function(cov) {
    data.frame(case = paste0(case, "_", cov), term = names, estimate = theta,
               std_error = sqrt(diag(covs[[cov]])))
  }))
}

cases <- list()
reference <- list()

# ---- multinom ---------------------------------------------------------------
mnl_case <- function(case, formula_py, formula_r) {
  data <- d
  data$party <- factor(data$party)  # levels sorted: Conservative (reference), Labour, Liberal Democrat
  fit <- multinom(as.formula(formula_r), data = data, Hess = TRUE, trace = FALSE,
                  maxit = 10000, abstol = 1e-14, reltol = 1e-14)
  X <- model.matrix(fit)
  Y <- model.matrix(~ party - 1, data)
  coefs <- coef(fit)  # rows: levels 2..K; columns: terms
  theta <- as.vector(t(coefs))  # level-major, as vcov(multinom) orders them
  k <- ncol(X)
  loglik_i <- function(t) {
    B <- cbind(0, matrix(t, nrow = k))
    eta <- X %*% B
    rowSums(Y * eta) - log(rowSums(exp(eta)))
  }
  h_inv <- solve(fit$Hessian)
  levels <- rownames(coefs)
  py_terms <- py_names(colnames(X))
  names <- as.vector(t(outer(levels, py_terms, function(l, t) paste0(t, " | party=", l))))
  covs <- c(list(nonrobust = h_inv), sandwiches(theta, loglik_i, h_inv))
  cases[[length(cases) + 1]] <<- data.frame(case = case, formula_py = formula_py,
                                             formula_r = formula_r, family = "mnlogit")
  reference[[length(reference) + 1]] <<- rows_of(case, names, theta, covs)
}
mnl_case("mnlogit_basic", "party ~ x + C(arm) + z", "party ~ x + arm + z")

# ---- polr -------------------------------------------------------------------
polr_case <- function(case, formula_py, formula_r, outcome, method) {
  data <- d
  data[[outcome]] <- factor(data[[outcome]], ordered = TRUE)
  fit <- polr(as.formula(formula_r), data = data, method = method, Hess = TRUE,
              control = list(reltol = 1e-15, maxit = 10000))
  X <- model.matrix(fit)[, -1, drop = FALSE]  # polr drops the intercept
  y <- as.integer(data[[outcome]])
  K <- nlevels(data[[outcome]])
  cdf <- if (method == "logistic") plogis else pnorm
  theta <- c(coef(fit), fit$zeta)
  loglik_i <- function(t) {
    b <- t[seq_len(ncol(X))]
    zeta <- c(-Inf, t[ncol(X) + seq_len(K - 1)], Inf)
    eta <- drop(X %*% b)
    log(cdf(zeta[y + 1] - eta) - cdf(zeta[y] - eta))
  }
  h_inv <- solve(-hessian(function(t) sum(loglik_i(t)), theta))
  stopifnot(max(abs(sqrt(diag(h_inv)) - sqrt(diag(vcov(fit))))) < 1e-3)
  levels <- levels(data[[outcome]])
  names <- c(py_names(colnames(X)),
             paste0("threshold ", head(levels, -1), "|", tail(levels, -1)))
  covs <- c(list(nonrobust = h_inv), sandwiches(theta, loglik_i, h_inv))
  family <- if (method == "logistic") "ologit" else "oprobit"
  cases[[length(cases) + 1]] <<- data.frame(case = case, formula_py = formula_py,
                                             formula_r = formula_r, family = family)
  reference[[length(reference) + 1]] <<- rows_of(case, names, theta, covs)
}
polr_case("ologit_basic", "ord ~ x + C(arm) + z", "ord ~ x + arm + z", "ord", "logistic")
polr_case("oprobit_basic", "ordp ~ x + C(arm)", "ordp ~ x + arm", "ordp", "probit")

write.csv(do.call(rbind, cases), file.path(out_dir, "categorical_cases.csv"), row.names = FALSE)
out <- do.call(rbind, reference)
write.csv(format(out, digits = 15), file.path(out_dir, "categorical_reference.csv"),
          row.names = FALSE)
cat("wrote", nrow(out), "reference rows\n")
